"""A built-in response approximating an on-axis Chandra ACIS-S (back-illuminated S3) source.

- Effective area: monotone cubic (PCHIP) interpolation in log-log of anchor points read off a
  real CSC ARF (ObsID 1575, on-axis ACIS-S): ~205 cm^2 at 0.5 keV, 570 at 1, 705 at 1.5,
  630 at 2, a dip at the iridium M edges (2.1-2.3 keV), 410 at 3, 310 at 5, 90 at 7, 35 at 8.
- Redistribution: Gaussian with FWHM(E) = sqrt(0.004 + 0.006 E) keV (0.10 keV at 1 keV,
  0.20 keV at 6 keV — ACIS-S3 at launch-era CTI), truncated at 5 sigma, onto 1024 PI channels
  of 14.6 eV (channel i covers [(i-1), i] * 14.6 eV, numbered from 1 as in ACIS).
- True-energy grid: 0.3-10 keV in 10 eV bins (the CSC ARF spacing).

The result is an :class:`xlatent.instrument.Response`, so folding is shared with real files.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.interpolate import PchipInterpolator
from scipy.special import erf

from xlatent.instrument.response import ARF, RMF, Response

#: (energy keV, effective area cm^2) anchors of the built-in on-axis ACIS-S ARF.
ACIS_S_AREA_ANCHORS: tuple[tuple[float, float], ...] = (
    (0.30, 30.0), (0.35, 50.0), (0.40, 88.0), (0.45, 145.0), (0.50, 205.0), (0.60, 259.0),
    (0.70, 333.0), (0.80, 440.0), (1.00, 570.0), (1.20, 649.0), (1.50, 705.0), (1.80, 641.0),
    (2.00, 630.0), (2.10, 520.0), (2.20, 340.0), (2.50, 401.0), (3.00, 410.0), (4.00, 399.0),
    (5.00, 310.0), (6.00, 186.0), (7.00, 90.0), (8.00, 35.0), (9.00, 17.0), (10.0, 11.0),
)  # fmt: skip

CHANNEL_WIDTH_KEV = 0.0146
N_CHANNELS = 1024


def acis_fwhm_kev(energy_kev: np.ndarray | float) -> np.ndarray:
    """ACIS-like spectral resolution: FWHM (keV) at ``energy_kev``."""
    return np.sqrt(0.004 + 0.006 * np.asarray(energy_kev, dtype=np.float64))


def acis_area_cm2(energy_kev: np.ndarray | float) -> np.ndarray:
    """Built-in on-axis ACIS-S effective area (cm^2); 0 outside 0.3-10 keV."""
    e_a, a_a = np.array(ACIS_S_AREA_ANCHORS).T
    interp = PchipInterpolator(np.log(e_a), np.log(a_a), extrapolate=False)
    e = np.asarray(energy_kev, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.exp(interp(np.log(e)))
    return np.nan_to_num(out, nan=0.0)


def gaussian_rmf(
    energ_lo_kev: np.ndarray,
    energ_hi_kev: np.ndarray,
    e_min_kev: np.ndarray,
    e_max_kev: np.ndarray,
    fwhm_kev: np.ndarray,
    n_sigma: float = 5.0,
    first_channel: int = 1,
) -> RMF:
    """RMF whose row for each true-energy bin is a Gaussian (given FWHM) over the channels."""
    centre = 0.5 * (energ_lo_kev + energ_hi_kev)
    sigma = np.asarray(fwhm_kev, dtype=np.float64) / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    rows, cols, vals = [], [], []
    for i, (c, s) in enumerate(zip(centre, sigma, strict=True)):
        j0 = max(np.searchsorted(e_max_kev, c - n_sigma * s), 0)
        j1 = min(np.searchsorted(e_min_kev, c + n_sigma * s), e_min_kev.size)
        if j1 <= j0:
            continue
        cdf_lo = erf((e_min_kev[j0:j1] - c) / (np.sqrt(2.0) * s))
        cdf_hi = erf((e_max_kev[j0:j1] - c) / (np.sqrt(2.0) * s))
        p = 0.5 * (cdf_hi - cdf_lo)
        p /= p.sum()  # the truncated wings are returned to the core, conserving photons
        rows.append(np.full(j1 - j0, i))
        cols.append(np.arange(j0, j1))
        vals.append(p)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(centre.size, e_min_kev.size),
    )
    return RMF(
        np.asarray(energ_lo_kev, dtype=np.float64),
        np.asarray(energ_hi_kev, dtype=np.float64),
        matrix,
        np.asarray(e_min_kev, dtype=np.float64),
        np.asarray(e_max_kev, dtype=np.float64),
        first_channel,
        "builtin:acis-s",
    )


@lru_cache(maxsize=1)
def default_response() -> Response:
    """The built-in on-axis ACIS-S response (cached; treat as read-only)."""
    edges = np.round(np.arange(0.30, 10.0 + 1e-9, 0.01), 6)
    lo, hi = edges[:-1], edges[1:]
    chan = np.arange(N_CHANNELS)
    e_min = chan * CHANNEL_WIDTH_KEV
    e_max = (chan + 1) * CHANNEL_WIDTH_KEV
    # Values pass through float32 (the OGIP file precision) so that writing the response to
    # FITS and reading it back reproduces it bit for bit and round trips are exact.
    lo, hi, e_min, e_max = (np.float32(x).astype(np.float64) for x in (lo, hi, e_min, e_max))
    rmf = gaussian_rmf(lo, hi, e_min, e_max, acis_fwhm_kev(0.5 * (lo + hi)))
    rmf.matrix.data[:] = rmf.matrix.data.astype(np.float32)
    area = acis_area_cm2(0.5 * (lo + hi)).astype(np.float32).astype(np.float64)
    arf = ARF(lo, hi, area, "builtin:acis-s")
    return Response(arf, rmf)
