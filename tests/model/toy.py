"""A small stand-in spectrum generator for the model tests and benchmarks/autoencoder.py.

Absorbed power laws, blackbodies and their sums, folded through a smooth effective-area curve
and a Gaussian redistribution (FWHM ~ 0.12 keV sqrt(E/1 keV)) onto the grid, with a flat
particle-like background and Poisson noise. It is deliberately crude (absorption
sigma(E) = 2.2e-22 (E/keV)^-8/3 cm^2, a made-up ARF): it exists so that the model code can be
tested without the physics simulator (:mod:`xlatent.physics`), not to be realistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlatent.core import EnergyGrid, SpectrumSet


def toy_spectrum_set(
    n: int,
    seed: int = 0,
    grid: EnergyGrid | None = None,
    counts_range: tuple[float, float] = (20.0, 5000.0),
) -> SpectrumSet:
    """``n`` toy spectra with simulator-like truth (``expected_counts``, ``truth_*`` columns)."""
    rng = np.random.default_rng(seed)
    grid = grid or EnergyGrid.default()
    fine = np.geomspace(0.3, 10.0, 601)
    e = np.sqrt(fine[:-1] * fine[1:])
    de = np.diff(fine)
    kind = rng.choice(["pl", "bb", "pl+bb"], size=n, p=[0.6, 0.2, 0.2])
    gamma = rng.uniform(0.8, 3.2, n)
    kt = np.where(kind == "pl", np.nan, 10 ** rng.uniform(-0.9, 0.2, n))
    nh = 10 ** rng.uniform(-2.0, 1.3, n)
    frac_bb = np.where(kind == "pl+bb", rng.uniform(0.2, 0.8, n), (kind == "bb").astype(float))

    pl = e[None, :] ** -gamma[:, None]
    pl /= (pl * de).sum(1, keepdims=True)
    kt_safe = np.nan_to_num(kt, nan=1.0)
    x = np.clip(e[None, :] / kt_safe[:, None], None, 500)
    bb = e[None, :] ** 2 / np.expm1(x)
    bb /= (bb * de).sum(1, keepdims=True)
    photons = (1 - frac_bb)[:, None] * pl + frac_bb[:, None] * bb
    photons *= np.exp(-nh[:, None] * 2.2 * e[None, :] ** (-8.0 / 3.0))

    # Made-up ACIS-like effective area: rises to ~1.5 keV, falls above; soft-end contamination
    # and overall scale vary per spectrum so the area channel carries information.
    contam = rng.uniform(0.2, 1.5, n)
    area_e = (
        600
        * np.exp(-((np.log(e / 1.5)) ** 2) / 1.2)[None, :]
        * np.exp(-contam[:, None] * 0.15 * e[None, :] ** -2.0)
    )
    area_e *= rng.uniform(0.6, 1.2, n)[:, None]

    # Gaussian redistribution from fine energies onto the grid bins.
    sig = 0.12 * np.sqrt(e) / 2.3548
    from scipy.special import erf

    edges = grid.edges_kev
    z = (edges[None, :] - e[:, None]) / (np.sqrt(2) * sig[:, None])
    resp = np.diff(0.5 * (1 + erf(z)), axis=1)  # (n_fine, m)
    shape = (photons * area_e * de[None, :]) @ resp
    shape /= shape.sum(1, keepdims=True)

    lo, hi = np.log(counts_range[0]), np.log(counts_range[1])
    total = np.exp(rng.uniform(lo, hi, n))
    expected = shape * total[:, None]
    exposure = rng.uniform(5e3, 1e5, n)
    bkg_rate = rng.uniform(0.5, 3.0, n) * 1e-5  # counts / s / keV in the source region
    bkg_exp = bkg_rate[:, None] * exposure[:, None] * grid.widths_kev[None, :]
    backscal = 10.0  # background region 10x the source region
    background = rng.poisson(bkg_exp * backscal) / backscal
    counts = rng.poisson(expected + bkg_exp).astype(np.float64)

    # Effective area on the grid: the fine curve averaged over each bin.
    idx = np.clip(np.searchsorted(e, grid.centers_kev), 0, e.size - 1)
    meta = pd.DataFrame(
        {
            "spec_id": [f"toy{seed}_{i:06d}" for i in range(n)],
            "source_class": np.where(kind == "pl", "AGN", np.where(kind == "bb", "NS", "LMXB")),
            "truth_model": kind,
            "truth_nh_1e22": nh,
            "truth_gamma": np.where(kind == "bb", np.nan, gamma),
            "truth_kt_kev": kt,
        }
    )
    s = SpectrumSet(
        grid=grid,
        counts=counts,
        background=background,
        exposure_s=exposure,
        effective_area_cm2=area_e[:, idx],
        meta=meta,
        expected_counts=expected,
    )
    s.update_band_columns()
    return s


def piled_toy_set(n: int, seed: int) -> SpectrumSet:
    """``n`` toy spectra of 20-20,000 counts observed with ACIS frames (3.241 s, 79% of the PSF
    in the core): every third in 1e6 s, which never piles, the others in 2,000 s, where the
    bright ones pile. Refinement and pile-up both have work in it."""
    s = toy_spectrum_set(n, seed=seed, counts_range=(20.0, 20000.0))
    s.meta["frame_time_s"], s.meta["psf_core_fraction"] = 3.241, 0.79
    s.exposure_s[:] = np.where(np.arange(n) % 3, 2000.0, 1e6)
    return s
