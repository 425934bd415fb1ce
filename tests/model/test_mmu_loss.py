"""Multimodal Universe spectra (no ARF, background already subtracted) and the Poisson loss."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from xlatent.io import mmu
from xlatent.model import SpectralAutoencoder

from .conftest import FAST


def write_mmu_standin(path: Path, n: int = 24, livetime: bool = False) -> Path:
    """A file in the MMU Chandra schema (scripts/chandra of MultimodalUniverse): vlen
    ``spectrum_*`` arrays (counts s^-1 keV^-1, grouped) and 1-D catalogue columns."""
    rng = np.random.default_rng(5)
    vlen = h5py.special_dtype(vlen=np.dtype("float64"))
    exposure = 15000.0
    with h5py.File(path, "w") as f:
        f["name"] = np.char.encode(np.array([f"2CXO J{i:06d}.0+000000" for i in range(n)]))
        f["obsid"] = np.arange(n) + 100
        f["obi"] = np.zeros(n, dtype=int)
        for col in ("hard_hm", "hard_hs", "hard_ms"):
            f[col] = rng.uniform(-1, 1, n)
        f["flux_aper_b"] = rng.uniform(1e-15, 1e-13, n)
        f["var_prob_b"] = rng.uniform(0, 1, n)
        if livetime:
            f["livetime"] = np.full(n, exposure)
        keys = ("spectrum_ene_lo", "spectrum_ene_hi", "spectrum_ene", "spectrum_flux",
                "spectrum_flux_err")  # fmt: skip
        for key in keys:
            f.create_dataset(key, (n,), dtype=vlen)
        for i in range(n):
            edges = np.geomspace(0.5, 8.0, 30)
            width = np.diff(edges)
            counts = rng.integers(5, 60, edges.size - 1).astype(float)
            f["spectrum_ene_lo"][i], f["spectrum_ene_hi"][i] = edges[:-1], edges[1:]
            f["spectrum_ene"][i] = 0.5 * (edges[:-1] + edges[1:])
            f["spectrum_flux"][i] = counts / (exposure * width)
            f["spectrum_flux_err"][i] = np.sqrt(counts) / (exposure * width)
    return path


def test_mmu_set_refuses_the_poisson_loss_and_trains_with_mse(tmp_path: Path) -> None:
    s = mmu.read(write_mmu_standin(tmp_path / "mmu.hdf5"))
    assert not s.meta["effective_area_known"].any() and not s.meta["background_known"].any()
    opts = {"latent_dim": 2, "epochs": 1, "batch_size": 8, "seed": 0, **FAST}
    with pytest.raises(ValueError, match="needs the effective area .* train with loss='mse'"):
        SpectralAutoencoder(loss="poisson", **opts).fit(s)
    model = SpectralAutoencoder(loss="mse", **opts).fit(s)
    assert model.transform(s).shape == (len(s), 2)


def test_mmu_exposure_column_is_carried(tmp_path: Path) -> None:
    s = mmu.read(write_mmu_standin(tmp_path / "mmu.hdf5", livetime=True))
    assert not s.meta["exposure_estimated"].any()
    np.testing.assert_allclose(s.exposure_s, 15000.0)
    assert {"hard_hm", "hr_counts_hm", "flux_aper_b", "var_prob_b"} <= set(s.meta)


def test_poisson_refusal_names_the_background_when_only_it_is_unknown(tmp_path: Path) -> None:
    s = mmu.read(write_mmu_standin(tmp_path / "mmu.hdf5"))
    s.meta["effective_area_known"] = True
    s.meta.loc[3, "background_known"] = False
    s.meta.loc[[i for i in range(len(s)) if i != 3], "background_known"] = True
    msg = r"needs the background .* 1 of 24 have background_known == False \(first 'spec"
    with pytest.raises(ValueError, match=msg):
        SpectralAutoencoder(loss="poisson", latent_dim=2, epochs=1, **FAST).fit(s)
