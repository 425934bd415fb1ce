"""Shared helpers of the io tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest


def write_mmu_file(path: Path, flux_value: float | None = None) -> Path:
    """A one-source file in the Multimodal Universe Chandra schema (29 bins of 10 counts at
    1e4 s); ``flux_value`` replaces one bin's flux (e.g. NaN)."""
    vlen = h5py.special_dtype(vlen=np.dtype("float64"))
    with h5py.File(path, "w") as f:
        f["obsid"] = np.array([101])
        for key in ("spectrum_ene_lo", "spectrum_ene_hi", "spectrum_flux", "spectrum_flux_err"):
            f.create_dataset(key, (1,), dtype=vlen)
        edges = np.geomspace(0.5, 8.0, 30)
        counts = np.full(29, 10.0)
        flux = counts / (1e4 * np.diff(edges))
        if flux_value is not None:
            flux[3] = flux_value
        f["spectrum_ene_lo"][0] = edges[:-1]
        f["spectrum_ene_hi"][0] = edges[1:]
        f["spectrum_flux"][0] = flux
        f["spectrum_flux_err"][0] = np.sqrt(counts) / (1e4 * np.diff(edges))
    return path


@pytest.fixture
def mmu_file() -> Callable[..., Path]:
    """:func:`write_mmu_file`."""
    return write_mmu_file
