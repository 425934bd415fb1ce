"""Fixtures: the CSC stand-in (TAP + retrieval, tests/io/csc/fake_csc.py) on 127.0.0.1, serving
a mock archive built from the real spectra (tests/io/csc/mock_archive.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from .fake_csc import FakeCSC
from .mock_archive import MockArchive, build_mock_archive, standard_catalog


@pytest.fixture(scope="session")
def mock_archive(real_spectra_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> MockArchive:
    return build_mock_archive(real_spectra_dir, tmp_path_factory.mktemp("mock_archive"))


@pytest.fixture(scope="session")
def catalog_names(td_csv: Path) -> list[str]:
    return pd.read_csv(td_csv, usecols=["CSCv2_name"], nrows=6)["CSCv2_name"].tolist()


@pytest.fixture
def fake_csc(mock_archive: MockArchive, catalog_names: list[str]) -> Iterator[FakeCSC]:
    rows = standard_catalog(mock_archive.keys, catalog_names)
    server = FakeCSC(mock_archive, rows, slow_s=1.0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _no_real_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset service URLs from the environment so no test can reach the real services."""
    monkeypatch.setenv("XLATENT_CSC_TAP_URL", "http://127.0.0.1:9/unset")
    monkeypatch.setenv("XLATENT_CSC_RETRIEVE_URL", "http://127.0.0.1:9/unset")
