"""Shared fixtures: the read-only real data beside the repository (never copied into it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$XLATENT_SHARED`` or ``../shared`` relative to the repository root."""
    return Path(os.environ.get("XLATENT_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not (path / "data").is_dir():
        pytest.fail(f"shared data not found at {path} (set XLATENT_SHARED)")
    return path


@pytest.fixture(scope="session")
def real_spectra_dir(shared: Path) -> Path:
    return shared / "data" / "real_spectra"


@pytest.fixture(scope="session")
def td_csv(shared: Path) -> Path:
    return shared / "data" / "csc_td" / "TD.csv"
