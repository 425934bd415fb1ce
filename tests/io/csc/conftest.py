"""Fixtures: a fake CSC service (TAP + retrieval) on 127.0.0.1, fed by the real spectra."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from .fake_csc import FakeCSC, FakeDetection, build_detections


@pytest.fixture(scope="session")
def fake_detections(real_spectra_dir: Path, td_csv: Path) -> list[FakeDetection]:
    names = pd.read_csv(td_csv, usecols=["CSCv2_name"], nrows=6)["CSCv2_name"].tolist()
    return build_detections(real_spectra_dir, names)


@pytest.fixture
def fake_csc(fake_detections: list[FakeDetection]) -> Iterator[FakeCSC]:
    server = FakeCSC(fake_detections, slow_s=1.0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_real_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset service URLs from the environment so no test can reach the real services."""
    monkeypatch.setenv("XLATENT_CSC_TAP_URL", "http://127.0.0.1:9/unset")
    monkeypatch.setenv("XLATENT_CSC_RETRIEVE_URL", "http://127.0.0.1:9/unset")
