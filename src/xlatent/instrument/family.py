"""A family of Chandra ACIS responses: chip type, observation date and off-axis angle.

Every function is vectorised over sources: ``chip_type`` is an array of ``"FI"``
(front-illuminated: ACIS-I0..I3, S0, S2, S4, S5) or ``"BI"`` (back-illuminated: S1, S3),
``epoch_year`` a decimal year (e.g. 2001.76) and ``theta_arcmin`` the off-axis angle.
Effective areas live on the true-energy bins of :func:`energy_bins` (0.3-10 keV in 10 eV
bins, the bins of the built-in response), so one chip's RMF serves every date and angle.

A(E; chip, date, theta) = HRMA on-axis area(E) x vignetting(E, theta) x QE_chip(E) (CCD with
its optical blocking filter) x exp(-tau(E, chip, date, theta)) (the ACIS contaminant). The
calibration arrays come from CALDB files via ``tools/build_acis_family.py`` and ship as
``data/acis_family.npz`` (:mod:`xlatent.instrument.acis_calib`); "FI" is the mean of ACIS-I0..I3,
"BI" is ACIS-S3. Sources and validation: docs/simulator.md, "Response family".
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from scipy.special import erf

from xlatent.instrument.acis import default_response, gaussian_rmf
from xlatent.instrument.acis_calib import (
    family_table,
    psf_r90,
    tau067,
    vignetting_factor,
    vignetting_shape,
    vignetting_slope,
)
from xlatent.instrument.response import ARF, RMF, Response, line_core

CHIP_TYPES: tuple[str, ...] = ("FI", "BI")
#: ACIS CCD_ID -> chip type: I0-I3, S0, S2, S4, S5 front-illuminated; S1, S3 back-illuminated.
CCD_CHIP_TYPE: dict[int, str] = {0: "FI", 1: "FI", 2: "FI", 3: "FI", 4: "FI", 5: "BI",
                                 6: "FI", 7: "BI", 8: "FI", 9: "FI"}  # fmt: skip
#: Range of observation dates the family covers (decimal years).
EPOCH_RANGE_YEAR: tuple[float, float] = (1999.6, 2025.9)
#: Largest off-axis angle (arcmin) the family covers.
THETA_MAX_ARCMIN = 15.0
#: Date of the observation whose ARF anchors the built-in response and the family's mirror
#: (ObsID 1575).
BUILTIN_EPOCH_YEAR = 2001.76


def energy_bins() -> tuple[np.ndarray, np.ndarray]:
    """(energ_lo, energ_hi) in keV of the family's true-energy bins."""
    rmf = default_response().rmf
    return rmf.energ_lo, rmf.energ_hi


def _centres() -> np.ndarray:
    lo, hi = energy_bins()
    return 0.5 * (lo + hi)


def _as_arrays(
    chip_type: np.ndarray | str, epoch_year: np.ndarray | float, theta_arcmin: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chip, epoch, theta = np.broadcast_arrays(
        np.asarray(chip_type, dtype=str), np.asarray(epoch_year, dtype=np.float64),
        np.asarray(theta_arcmin, dtype=np.float64),
    )  # fmt: skip
    bad = ~np.isin(chip, CHIP_TYPES)
    if bad.any():
        raise ValueError(f"chip_type must be one of {CHIP_TYPES}, not {chip[bad][0]!r}")
    return chip.ravel(), epoch.ravel(), theta.ravel()


def contaminant_optical_depth(
    energy_kev: np.ndarray,
    chip_type: np.ndarray | str,
    epoch_year: np.ndarray | float,
    theta_arcmin: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Optical depth (n, n_e) of the ACIS contaminant at ``energy_kev``.

    CALDB form mu(E) x (tau0(t) + tau1(t) <fxy>(theta)); the spatial term is the chip-area
    mean of the CALDB map at ``theta_arcmin`` from the aimpoint (thicker towards chip edges).
    """
    chip, epoch, theta = _as_arrays(chip_type, epoch_year, theta_arcmin)
    e = np.asarray(energy_kev, dtype=np.float64)
    tab = family_table()
    out = np.empty((chip.size, e.size))
    for c in CHIP_TYPES:
        sel = chip == c
        if sel.any():
            depth = _tau067(c, epoch[sel], theta[sel])
            out[sel] = depth[:, None] * np.interp(e, tab.energy_kev, tab.mu[c])[None, :]
    return out


def _tau067(chip: str, epoch: np.ndarray, theta: np.ndarray) -> np.ndarray:
    tab = family_table()
    return tau067(tab.contam_year, tab.tau0[chip], tab.tau1[chip], tab.fxy_theta_arcmin,
                  tab.fxy[chip], epoch, theta)  # fmt: skip


def vignetting(energy_kev: np.ndarray, theta_arcmin: np.ndarray | float) -> np.ndarray:
    """Fraction (n, n_e) of the on-axis mirror area left at ``theta_arcmin``."""
    return vignetting_factor(energy_kev, theta_arcmin)


@lru_cache(maxsize=1)
def _grid_tables() -> dict[str, np.ndarray]:
    """Per-chip arrays on the family grid, computed once: on-axis area without contaminant
    (mirror x QE), contaminant mu(E), vignetting slope b(E)."""
    tab = family_table()
    e = _centres()
    if tab.energy_kev.size != e.size or not np.allclose(tab.energy_kev, e):
        raise RuntimeError("acis_family.npz was built on another energy grid; rebuild it")
    # float32 work arrays: exp and products over (n, n_e) run ~5x faster than in float64, and
    # the result (1e-7 relative) is far below the calibration's accuracy.
    out = {"slope": vignetting_slope(e).astype(np.float32)}
    out["neg_slope"] = -out["slope"]
    for c in CHIP_TYPES:
        out[f"base_{c}"] = (tab.mirror_cm2 * tab.qe[c]).astype(np.float32)
        out[f"mu_{c}"] = tab.mu[c].astype(np.float32)
    return out


def effective_area_cm2(
    chip_type: np.ndarray | str, epoch_year: np.ndarray | float, theta_arcmin: np.ndarray | float
) -> np.ndarray:
    """Effective area (n, n_e) in cm^2 (float32) on :func:`energy_bins` for each (chip, date,
    angle)."""
    chip, epoch, theta = _as_arrays(chip_type, epoch_year, theta_arcmin)
    g = _grid_tables()
    out = None
    for c in CHIP_TYPES:
        sel = np.flatnonzero(chip == c)
        if sel.size == 0:
            continue
        if sel.size == chip.size:
            sel = slice(None)  # one chip type: no gather/scatter copies
        depth = _tau067(c, epoch[sel], theta[sel]).astype(np.float32)
        # Only a few cheap (n, n_e) passes: exp of an outer product, then two products.
        block = np.exp(np.multiply.outer(-depth, g[f"mu_{c}"]))
        shape = vignetting_shape(theta[sel]).astype(np.float32)
        vig = np.multiply.outer(shape, g["neg_slope"])
        vig += np.float32(1.0)  # in place: ``1 - outer`` here took 10x longer (measured)
        np.maximum(vig, np.float32(0.0), out=vig)
        block *= vig
        block *= g[f"base_{c}"]
        if isinstance(sel, slice):
            return block
        if out is None:
            out = np.empty((chip.size, block.shape[1]), dtype=np.float32)
        out[sel] = block
    assert out is not None
    return out


def fwhm_kev(chip_type: str, energy_kev: np.ndarray | float) -> np.ndarray:
    """Spectral resolution (FWHM, keV) of a chip type at ``energy_kev``.

    FWHM^2 = a + b E, (a, b) fitted to the line cores of the real RMFs (FI: ObsIDs 308, 1878
    on ACIS-I3/I2; BI: 1575, 9774 on ACIS-S3); floored at 40 eV (the CCD noise limit).
    """
    return fwhm_of_law(family_table().fwhm_coef[chip_type], energy_kev)


#: The floor of :func:`fwhm_of_law` (keV): the CCD noise limit.
MIN_FWHM_KEV = 0.04


def fwhm_of_law(coef: np.ndarray, energy_kev: np.ndarray | float) -> np.ndarray:
    """FWHM (keV) at ``energy_kev`` of the law FWHM^2 = a + b E with ``coef`` = (a, b)
    (:func:`fwhm_law`), floored at :data:`MIN_FWHM_KEV`."""
    a, b = coef
    e = np.asarray(energy_kev, dtype=np.float64)
    return np.sqrt(np.maximum(a + b * e, MIN_FWHM_KEV**2))


#: Energies (keV) whose line cores :func:`fwhm_law` fits.
FWHM_FIT_ENERGIES_KEV = np.arange(0.5, 8.01, 0.25)


def fwhm_law(rmfs: Iterable[RMF]) -> np.ndarray:
    """(a, b) of FWHM^2 = a + b E (keV^2, keV^2 / keV) fitted to the line cores
    (:func:`~xlatent.instrument.response.line_core`) of ``rmfs`` at 0.5-8 keV. Relative least
    squares (each row divided by its FWHM^2), so low energies weigh as much as high ones."""
    es, w2 = [], []
    for rmf in rmfs:
        for e in FWHM_FIT_ENERGIES_KEV:
            es.append(e)
            w2.append(line_core(rmf, float(e))[1] ** 2)
    w2_arr = np.array(w2)
    design = np.column_stack([np.ones(len(es)), es]) / w2_arr[:, None]
    return np.linalg.lstsq(design, np.ones_like(w2_arr), rcond=None)[0]


@lru_cache(maxsize=len(CHIP_TYPES))
def chip_rmf(chip_type: str) -> RMF:
    """The RMF of a chip type on :func:`energy_bins` and 1024 PI channels (cached)."""
    if chip_type not in CHIP_TYPES:
        raise ValueError(f"chip_type must be one of {CHIP_TYPES}, not {chip_type!r}")
    ref = default_response().rmf
    lo, hi = energy_bins()
    rmf = gaussian_rmf(lo, hi, ref.e_min, ref.e_max, fwhm_kev(chip_type, 0.5 * (lo + hi)))
    rmf.matrix.data[:] = rmf.matrix.data.astype(np.float32)
    return RMF(rmf.energ_lo, rmf.energ_hi, rmf.matrix, rmf.e_min, rmf.e_max, 1,
               f"family:acis-{chip_type}")  # fmt: skip


def psf_r90_arcsec(
    theta_arcmin: np.ndarray | float, energy_kev: np.ndarray | float = 1.5
) -> np.ndarray:
    """Radius (arcsec) enclosing 90% of a point source's counts (default at 1.5 keV)."""
    return psf_r90(theta_arcmin, energy_kev)


#: Half side of the 3 x 3 pixel ACIS event island (arcsec; ACIS pixel 0.492").
ISLAND_HALF_ARCSEC = 1.5 * 0.492


def core_fraction(theta_arcmin: np.ndarray) -> np.ndarray:
    """Share of a point source's counts in the 3 x 3 pixel island on its peak (Gaussian PSF
    with the family's 90% radius at 1.5 keV; NaN angles count as on-axis)."""
    theta = np.nan_to_num(np.asarray(theta_arcmin, dtype=np.float64), nan=0.0)
    sigma = psf_r90_arcsec(theta) / np.sqrt(-2.0 * np.log(0.1))
    return erf(ISLAND_HALF_ARCSEC / (np.sqrt(2.0) * sigma)) ** 2


def response_id(
    chip_type: np.ndarray | str, epoch_year: np.ndarray | float, theta_arcmin: np.ndarray | float
) -> np.ndarray:
    """Readable identifiers such as ``acis-BI-2001.76-3.4`` (chip, date, off-axis arcmin)."""
    chip, epoch, theta = _as_arrays(chip_type, epoch_year, theta_arcmin)
    ids = [f"acis-{c}-{y:.2f}-{t:.1f}" for c, y, t in zip(chip, epoch, theta, strict=True)]
    return np.array(ids)


def family_response(chip_type: str, epoch_year: float, theta_arcmin: float) -> Response:
    """One member of the family as a :class:`Response` (e.g. to write it as OGIP files)."""
    lo, hi = energy_bins()
    area = effective_area_cm2(chip_type, epoch_year, theta_arcmin)[0].astype(np.float64)
    rid = str(response_id(chip_type, epoch_year, theta_arcmin)[0])
    return Response(ARF(lo, hi, area.astype(np.float32).astype(np.float64), rid),
                    chip_rmf(chip_type))  # fmt: skip
