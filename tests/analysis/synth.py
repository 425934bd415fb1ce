"""Small synthetic inputs with known answers (shared by the analysis and report tests)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd

from xlatent.analysis import CLASSES
from xlatent.core import EnergyGrid, SpectrumSet

matplotlib.use("Agg")


def make_set(n: int = 480, seed: int = 0, truth: bool = True, labels: bool = True) -> SpectrumSet:
    """Absorbed power laws whose slope and N_H depend on the class (classes cycle)."""
    rng = np.random.default_rng(seed)
    grid = EnergyGrid.log(0.5, 8.0, 32)
    e = grid.centers_kev
    cls = np.array([CLASSES[i % len(CLASSES)] for i in range(n)], dtype=object)
    k = np.array([i % len(CLASSES) for i in range(n)])
    gamma = 1.0 + 0.25 * k + rng.normal(0, 0.05, n)
    nh = 10 ** (-1.5 + 0.3 * k + rng.normal(0, 0.1, n))
    shape = e[None, :] ** -gamma[:, None] * np.exp(-nh[:, None] * 2.0 * e[None, :] ** -2.6)
    amp = 10 ** rng.uniform(2.0, 3.5, n)
    expected = shape / shape.sum(1, keepdims=True) * amp[:, None]
    bkg = np.full((n, grid.n_bins), 0.02)
    meta = {"spec_id": [f"x{i:05d}" for i in range(n)],
            "source_class": cls if labels else np.full(n, "", dtype=object)}  # fmt: skip
    if truth:
        bands = {"s": (0.5, 1.2), "m": (1.2, 2.0), "h": (2.0, 7.0), "b": (0.5, 7.0)}
        for b, (lo, hi) in bands.items():
            sel = (e >= lo) & (e < hi)
            meta[f"truth_flux_{b}"] = 1e-14 * expected[:, sel].sum(1)
        meta.update(truth_nh_1e22=nh, truth_gamma=gamma,
                    truth_kt_kev=np.where(k % 2 == 0, 10 ** rng.uniform(-0.5, 0.5, n), np.nan),
                    var_prob_b=rng.uniform(0, 1, n),
                    var_index_b=rng.integers(0, 10, n))  # fmt: skip
    s = SpectrumSet(
        grid=grid,
        counts=rng.poisson(expected + bkg).astype(float),
        background=bkg,
        exposure_s=np.full(n, 2e4),
        effective_area_cm2=np.full((n, grid.n_bins), 400.0),
        meta=pd.DataFrame(meta),
        expected_counts=expected if truth else None,
    )
    return s.update_band_columns()


def separated_latents(s: SpectrumSet, d: int = 8, seed: int = 1) -> pd.DataFrame:
    """Latents with one tight, far-apart blob per class (clusters = classes)."""
    rng = np.random.default_rng(seed)
    k = np.arange(len(s)) % len(CLASSES)  # make_set cycles through the classes
    z = 20.0 * np.eye(len(CLASSES), d)[k] + rng.normal(0, 0.3, (len(s), d))
    df = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(d)])
    df.insert(0, "spec_id", s.meta["spec_id"].to_numpy())
    return df


class OracleModel:
    """A 'model' whose reconstruction is the noiseless truth (deviance ratio exactly 1)."""

    latent_dim = 8

    def reconstruct(self, s: SpectrumSet) -> np.ndarray:
        return s.expected_counts.copy()


class FlatModel:
    """A 'model' that reconstructs every spectrum as flat (much worse than the truth)."""

    latent_dim = 8

    def reconstruct(self, s: SpectrumSet) -> np.ndarray:
        net = np.clip(s.counts - s.background, 0, None).sum(1, keepdims=True)
        return np.repeat(np.maximum(net, 1.0) / s.grid.n_bins, s.grid.n_bins, axis=1)
