"""Shared fixtures: the read-only real data beside the repository (never copied into it)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Whether this host has a CUDA device, read before the suite hides it.
HAS_CUDA = torch.cuda.is_available()
_real_cuda_is_available = torch.cuda.is_available
_show_cuda = False


def _cuda_is_available() -> bool:
    return _show_cuda and _real_cuda_is_available()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cuda: runs on a CUDA device (skipped without one); other tests see none"
    )
    # On a CUDA host every test not marked cuda runs as on the CPU-only CI machine, its
    # fixtures too (hence here, not per test): their exact claims (results stored by earlier
    # commits, bit-for-bit save and load, batch cuts) are CPU claims, which bf16 autocast and
    # cuBLAS's shape-dependent kernels do not keep. The CUDA paths have tests of their own.
    # (Not CUDA_VISIBLE_DEVICES: set here, it hid the device from the cuda tests too, as
    # CUDA starts lazily; processes the tests start may still see it.)
    if HAS_CUDA:
        torch.cuda.is_available = _cuda_is_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not HAS_CUDA:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cuda_for_tests_marked_cuda(request: pytest.FixtureRequest) -> Iterator[None]:
    global _show_cuda
    _show_cuda = request.node.get_closest_marker("cuda") is not None
    try:
        yield
    finally:
        _show_cuda = False


# A suite started in the background (`nohup`, `cmd &` in a script) inherits SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler, in this process or in the children it
# starts: the Ctrl-C tests (tests/core/test_atomic.py, the download's) would fail for the
# launcher's sake. A handler set here is reset to the default in every child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture
def meta_reads(monkeypatch) -> list[tuple]:
    """Every meta read of a view, as (columns, rows) (None: all)."""
    import xlatent.core.hdf5_meta as hdf5_meta

    calls: list[tuple] = []
    real = hdf5_meta.read_meta

    def spy(lay, cols=None, rows=None):
        calls.append((None if cols is None else tuple(cols), rows))
        return real(lay, cols, rows)

    monkeypatch.setattr(hdf5_meta, "read_meta", spy)
    return calls
