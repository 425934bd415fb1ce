"""Calibration pieces of the ACIS response family: the shipped table and the pure physics.

The table ``data/acis_family.npz`` (built by ``tools/build_acis_family.py`` from CALDB files,
see ``docs/simulator.md``, "Response family") holds, on the family's true-energy grid:
the HRMA on-axis area derived from ObsID 1575, the CALDB QE (optical blocking filter
included) per chip type, the contaminant's energy dependence ``mu`` and its optical depth at
0.67 keV versus date (uniform part ``tau0`` and spatially scaled part ``tau1``), and the
azimuthal mean of the spatial map ``fxy`` versus off-axis angle. The functions here take
those arrays as arguments, so the build tool and the family evaluate the same physics.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

#: Azimuth-averaged HRMA vignetting at 10 arcmin (fraction of the on-axis area) versus energy:
#: approximate readings of the POG (ch. 4, HRMA effective area versus off-axis angle).
VIGNETTING_10ARCMIN: tuple[tuple[float, float], ...] = (
    (0.28, 0.86), (1.49, 0.80), (4.51, 0.70), (6.40, 0.60), (8.63, 0.50),
)  # fmt: skip
#: Angle (arcmin) where vignetting turns from quadratic (near the axis) to linear in theta.
VIGNETTING_KNEE_ARCMIN = 2.0


@dataclass(frozen=True)
class FamilyTable:
    """The arrays of ``acis_family.npz`` (see the module docstring)."""

    energy_kev: np.ndarray
    mirror_cm2: np.ndarray
    qe: dict[str, np.ndarray]
    mu: dict[str, np.ndarray]
    contam_year: np.ndarray
    tau0: dict[str, np.ndarray]
    tau1: dict[str, np.ndarray]
    fxy_theta_arcmin: np.ndarray
    fxy: dict[str, np.ndarray]
    fwhm_coef: dict[str, np.ndarray]


@lru_cache(maxsize=1)
def family_table() -> FamilyTable:
    """The shipped calibration table (loaded once)."""
    ref = resources.files("xlatent.instrument").joinpath("data/acis_family.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        d = {k: np.array(z[k]) for k in z.files}
    chips = ("FI", "BI")
    return FamilyTable(
        energy_kev=d["energy_kev"], mirror_cm2=d["mirror_cm2"],
        qe={c: d[f"qe_{c}"] for c in chips}, mu={c: d[f"mu_{c}"] for c in chips},
        contam_year=d["contam_year"], tau0={c: d[f"tau0_{c}"] for c in chips},
        tau1={c: d[f"tau1_{c}"] for c in chips}, fxy_theta_arcmin=d["fxy_theta_arcmin"],
        fxy={c: d[f"fxy_{c}"] for c in chips}, fwhm_coef={c: d[f"fwhm_{c}"] for c in chips},
    )  # fmt: skip


def vignetting_slope(energy_kev: np.ndarray) -> np.ndarray:
    """b(E) in V = 1 - b(E) g(theta), normalised so that g(10') = 1."""
    e_a, v_a = np.array(VIGNETTING_10ARCMIN).T
    return 1.0 - np.interp(np.asarray(energy_kev, dtype=np.float64), e_a, v_a)


def vignetting_shape(theta_arcmin: np.ndarray | float) -> np.ndarray:
    """g(theta): quadratic near the axis (azimuthal average), linear far off-axis; g(10') = 1."""
    t = np.abs(np.asarray(theta_arcmin, dtype=np.float64))
    k = VIGNETTING_KNEE_ARCMIN
    return (t**2 / (t + k)) / (100.0 / (10.0 + k))


def vignetting_factor(energy_kev: np.ndarray, theta_arcmin: np.ndarray | float) -> np.ndarray:
    """V(E, theta), shape (n_theta, n_e): off-axis fraction of the on-axis mirror area."""
    t = np.atleast_1d(np.asarray(theta_arcmin, dtype=np.float64))
    v = 1.0 - vignetting_shape(t)[:, None] * vignetting_slope(energy_kev)[None, :]
    return np.clip(v, 0.0, 1.0)


def tau067(
    year_grid: np.ndarray, tau0: np.ndarray, tau1: np.ndarray, theta_grid: np.ndarray,
    fxy: np.ndarray, epoch_year: np.ndarray, theta_arcmin: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Contaminant optical depth at 0.67 keV: tau0(t) + tau1(t) * <fxy>(theta) (CALDB form)."""
    t0 = np.interp(epoch_year, year_grid, tau0)
    t1 = np.interp(epoch_year, year_grid, tau1)
    return t0 + t1 * np.interp(theta_arcmin, theta_grid, fxy)


def psf_r90(theta_arcmin: np.ndarray | float, energy_kev: np.ndarray | float) -> np.ndarray:
    """90% encircled-energy radius (arcsec): r0(E) + c(E) theta^2 (see docs, PSF)."""
    t = np.asarray(theta_arcmin, dtype=np.float64)
    e = np.asarray(energy_kev, dtype=np.float64)
    r0 = 1.0 + 0.15 * (e - 1.5)  # wider on-axis wings at high energy (POG ch. 4)
    c = 0.1 + 0.004 * (e - 1.5)  # off-axis blur grows slightly with energy
    return np.maximum(r0, 0.5) + c * t**2
