"""A family of Chandra ACIS responses: chip type, observation date and off-axis angle.

Every function is vectorised over sources: ``chip_type`` is an array of ``"FI"``
(front-illuminated: ACIS-I0..I3, S0, S2, S4) or ``"BI"`` (back-illuminated: S1, S3),
``epoch_year`` a decimal year (e.g. 2001.76) and ``theta_arcmin`` the off-axis angle.
Effective areas live on the true-energy bins of :func:`energy_bins` (0.3-10 keV in 10 eV
bins, the bins of the built-in response), so one chip's RMF serves every date and angle.

The area factorises as mirror x vignetting x detector QE (with the optical blocking filter)
x contaminant transmission. This first version is a coarse stand-in built on the built-in
on-axis ACIS-S area: it fixes the interface that the simulator uses.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from xlatent.instrument.acis import acis_area_cm2, acis_fwhm_kev, default_response, gaussian_rmf
from xlatent.instrument.response import ARF, RMF, Response

CHIP_TYPES: tuple[str, ...] = ("FI", "BI")
#: Range of observation dates the family covers (decimal years).
EPOCH_RANGE_YEAR: tuple[float, float] = (1999.6, 2025.9)
#: Largest off-axis angle (arcmin) the family covers.
THETA_MAX_ARCMIN = 15.0
#: Date of the observation whose ARF anchors the built-in response (ObsID 1575).
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
    energy_kev: np.ndarray, chip_type: np.ndarray | str, epoch_year: np.ndarray | float
) -> np.ndarray:
    """Optical depth (n, n_e) of the ACIS contaminant at ``energy_kev``."""
    chip, epoch, _ = _as_arrays(chip_type, epoch_year, 0.0)
    e = np.asarray(energy_kev, dtype=np.float64)
    years = np.clip(epoch - 1999.6, 0.0, None)
    tau067 = 1.2 * (1.0 - np.exp(-years / 8.0)) + 0.04 * np.clip(years - 10.0, 0.0, None)
    return tau067[:, None] * (e[None, :] / 0.67) ** -2.5


def vignetting(energy_kev: np.ndarray, theta_arcmin: np.ndarray | float) -> np.ndarray:
    """Fraction (n, n_e) of the on-axis mirror area left at ``theta_arcmin``."""
    e = np.asarray(energy_kev, dtype=np.float64)
    t = np.atleast_1d(np.asarray(theta_arcmin, dtype=np.float64))
    return 1.0 - (0.002 + 0.0004 * e[None, :]) * t[:, None] ** 2


def effective_area_cm2(
    chip_type: np.ndarray | str, epoch_year: np.ndarray | float, theta_arcmin: np.ndarray | float
) -> np.ndarray:
    """Effective area (n, n_e) in cm^2 on :func:`energy_bins` for each (chip, date, angle)."""
    chip, epoch, theta = _as_arrays(chip_type, epoch_year, theta_arcmin)
    e = _centres()
    base = acis_area_cm2(e)[None, :]
    qe = np.where((chip == "FI")[:, None], np.clip(e / 1.5, 0.35, 1.0)[None, :], 1.0)
    contam = np.exp(
        -contaminant_optical_depth(e, chip, epoch)
        + contaminant_optical_depth(e, "BI", BUILTIN_EPOCH_YEAR)
    )
    return base * qe * contam * np.clip(vignetting(e, theta), 0.0, 1.0)


def fwhm_kev(chip_type: str, energy_kev: np.ndarray | float) -> np.ndarray:
    """Spectral resolution (FWHM, keV) of a chip type at ``energy_kev``."""
    scale = 1.3 if chip_type == "FI" else 1.0
    return scale * acis_fwhm_kev(energy_kev)


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


def psf_r90_arcsec(theta_arcmin: np.ndarray | float) -> np.ndarray:
    """Radius (arcsec) enclosing 90% of a point source's counts at 1.5 keV."""
    t = np.asarray(theta_arcmin, dtype=np.float64)
    return 1.0 + 0.1 * t**2


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
    area = effective_area_cm2(chip_type, epoch_year, theta_arcmin)[0]
    rid = str(response_id(chip_type, epoch_year, theta_arcmin)[0])
    return Response(ARF(lo, hi, area.astype(np.float32).astype(np.float64), rid),
                    chip_rmf(chip_type))  # fmt: skip
