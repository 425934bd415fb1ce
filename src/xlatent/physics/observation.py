"""Where and when each simulated source was observed: detector, chip, date, off-axis angle.

The simulator groups sources into synthetic observations (``SOURCES_PER_OBSID`` share an
ObsID, its exposure, detector and date); each source gets its own off-axis angle and chip.
The distributions are deliberately simple stand-ins for the CSC's (documented in
``docs/simulator.md``, "Observation"):

- detector: ACIS-I with probability ``P_ACIS_I`` (0.45), else ACIS-S;
- date: decimal year in 1999.6-2025.9 with a density flat up to 2019.0 that falls linearly
  to 0.4 of that at 2025.9 (fewer recent observations: the CSC lags the archive, and
  the ACIS contaminant has made ACIS-S less used for soft targets);
- off-axis angle: p(theta) ∝ theta exp(-(theta/6')^2) on 0-10' (detections per annulus grow
  with its area, ∝ theta, while the falling sensitivity off-axis thins them out);
- chip: ACIS-I sources sit on I0-I3 (front-illuminated), and far off-axis (theta > 6')
  sometimes on S2 (FI) or S3 (BI); ACIS-S sources sit on S3 (back-illuminated), and beyond
  4' increasingly on S2 (FI).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

from xlatent.instrument.family import (
    CCD_CHIP_TYPE,
    CHIP_TYPES,
    EPOCH_RANGE_YEAR,
    THETA_MAX_ARCMIN,
    psf_r90_arcsec,
)

#: Share of synthetic observations made with ACIS-I (the rest ACIS-S).
P_ACIS_I = 0.45
#: Date density: flat to ``EPOCH_TURN_YEAR``, then linear down to ``EPOCH_END_WEIGHT``.
EPOCH_TURN_YEAR = 2019.0
EPOCH_END_WEIGHT = 0.4
#: Off-axis angle distribution: p(theta) ∝ theta exp(-(theta / THETA_SCALE)^2), theta <= max.
THETA_SCALE_ARCMIN = 6.0
THETA_DRAW_MAX_ARCMIN = 10.0
#: Source aperture: a circle of radius max(APERTURE_MIN_ARCSEC, APERTURE_R90_FACTOR x r90).
APERTURE_MIN_ARCSEC = 2.0
APERTURE_R90_FACTOR = 1.5
#: CCD numbers (ACIS CCD_ID) and their chip types.
ACIS_I_CCDS = (0, 1, 2, 3)
CCD_S2, CCD_S3 = 6, 7
BI_CCDS = tuple(ccd for ccd, chip in CCD_CHIP_TYPE.items() if chip == "BI")
INSTRUMENT_KEYS = ("chip_type", "epoch_year", "theta_arcmin")


def check_instrument(instrument: dict[str, Any] | None) -> dict[str, Any]:
    """The ``instrument`` option of :func:`simulate`, checked: any of ``chip_type`` ("FI" or
    "BI"), ``epoch_year`` (decimal year in the family's range), ``theta_arcmin`` (0 to the
    family's largest angle)."""
    fixed = dict(instrument or {})
    unknown = sorted(set(fixed) - set(INSTRUMENT_KEYS))
    if unknown:
        raise ValueError(f"instrument: unknown key(s) {unknown}; allowed: {list(INSTRUMENT_KEYS)}")
    if "chip_type" in fixed and fixed["chip_type"] not in CHIP_TYPES:
        raise ValueError(f"instrument chip_type must be one of {CHIP_TYPES}")
    if "epoch_year" in fixed:
        y = float(fixed["epoch_year"])
        if not EPOCH_RANGE_YEAR[0] <= y <= EPOCH_RANGE_YEAR[1]:
            raise ValueError(f"instrument epoch_year must be in {EPOCH_RANGE_YEAR}, not {y}")
        fixed["epoch_year"] = y
    if "theta_arcmin" in fixed:
        t = float(fixed["theta_arcmin"])
        if not 0.0 <= t <= THETA_MAX_ARCMIN:
            raise ValueError(f"instrument theta_arcmin must be in [0, {THETA_MAX_ARCMIN}], not {t}")
        fixed["theta_arcmin"] = t
    return fixed


def epoch_from_uniform(u: np.ndarray) -> np.ndarray:
    """Observation dates (decimal years) from uniform deviates, by the inverse CDF."""
    lo, hi = EPOCH_RANGE_YEAR
    years = np.linspace(lo, hi, 2001)
    slope = (1.0 - EPOCH_END_WEIGHT) / (hi - EPOCH_TURN_YEAR)
    weight = np.where(years < EPOCH_TURN_YEAR, 1.0, 1.0 - slope * (years - EPOCH_TURN_YEAR))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (weight[1:] + weight[:-1]) * np.diff(years))])
    return np.interp(u, cdf / cdf[-1], years)


def theta_from_uniform(u: np.ndarray) -> np.ndarray:
    """Off-axis angles (arcmin) from uniform deviates: the inverse CDF of
    p(theta) ∝ theta exp(-(theta/6)^2) truncated at 10'."""
    top = 1.0 - np.exp(-((THETA_DRAW_MAX_ARCMIN / THETA_SCALE_ARCMIN) ** 2))
    return THETA_SCALE_ARCMIN * np.sqrt(-np.log1p(-u * top))


def draw_observations(
    n_obs: int, rng: np.random.Generator, instrument: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per synthetic observation: ACIS-I or not (bool) and the date (decimal year)."""
    fixed = check_instrument(instrument)
    u_det, u_epoch = rng.random(n_obs), rng.random(n_obs)
    epoch = epoch_from_uniform(u_epoch)
    if "epoch_year" in fixed:
        epoch = np.full(n_obs, fixed["epoch_year"])
    return u_det < P_ACIS_I, epoch


def place_sources(
    acis_i: np.ndarray, epoch_year: np.ndarray, rng: np.random.Generator,
    instrument: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per source (its observation's ``acis_i`` and ``epoch_year`` given): ``detector``,
    ``ccd_id``, ``chip_type``, ``epoch_year``, ``theta_arcmin``. Every deviate is drawn whatever
    ``instrument`` fixes, so fixing one quantity leaves the draws of the others unchanged."""
    fixed = check_instrument(instrument)
    n = acis_i.size
    u_theta, u_chip, u_ccd = rng.random(n), rng.random(n), rng.random(n)
    theta = theta_from_uniform(u_theta)
    if "theta_arcmin" in fixed:
        theta = np.full(n, fixed["theta_arcmin"])
    i_chip = np.array(ACIS_I_CCDS)[np.minimum((u_ccd * 4).astype(int), 3)]
    # ACIS-I: S2/S3 only far off-axis; ACIS-S: S2 increasingly beyond 4'.
    p_s_on_i = 0.25 * np.clip((theta - 6.0) / 4.0, 0.0, 1.0)
    p_s2_on_s = 0.5 * np.clip((theta - 4.0) / 6.0, 0.0, 1.0)
    s_chip_on_i = np.where(u_ccd < 0.5, CCD_S2, CCD_S3)
    ccd = np.where(
        acis_i,
        np.where(u_chip < p_s_on_i, s_chip_on_i, i_chip),
        np.where(u_chip < p_s2_on_s, CCD_S2, CCD_S3),
    )
    if "chip_type" in fixed:  # FI: an ACIS-I chip; BI: S3 of ACIS-S
        acis_i = np.full(n, fixed["chip_type"] == "FI")
        ccd = i_chip if fixed["chip_type"] == "FI" else np.full(n, CCD_S3)
    chip = np.where(np.isin(ccd, BI_CCDS), "BI", "FI")
    return {
        "detector": np.where(acis_i, "ACIS-I", "ACIS-S"),
        "ccd_id": ccd.astype(np.int64),
        "chip_type": chip,
        "epoch_year": np.asarray(epoch_year, dtype=np.float64),
        "theta_arcmin": theta.astype(np.float64),
    }


def draw_instrument(
    obs_index: np.ndarray, rng: np.random.Generator, instrument: dict[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Per source: ``detector``, ``ccd_id``, ``chip_type``, ``epoch_year``, ``theta_arcmin``.

    Detector and date are drawn per observation (``obs_index``), angle and chip per source
    (:func:`draw_observations`, then :func:`place_sources`)."""
    n_obs = int(obs_index.max()) + 1 if obs_index.size else 0
    acis_i, epoch = draw_observations(n_obs, rng, instrument)
    return place_sources(acis_i[obs_index], epoch[obs_index], rng, instrument)


def aperture_area_arcsec2(theta_arcmin: np.ndarray) -> np.ndarray:
    """Source-region area (arcsec^2): a circle of radius max(2", 1.5 x r90(theta)), r90 the
    90% encircled-energy radius at 1.5 keV; it holds practically all the source counts, so no
    aperture correction is applied, and it grows off-axis with the PSF (more background)."""
    r = np.maximum(APERTURE_MIN_ARCSEC, APERTURE_R90_FACTOR * psf_r90_arcsec(theta_arcmin))
    return np.pi * r**2


def date_obs(epoch_year: np.ndarray) -> np.ndarray:
    """FITS DATE-OBS strings (``YYYY-MM-DDThh:mm:ss``) of decimal years; "" for NaN."""
    years = np.atleast_1d(np.asarray(epoch_year, dtype=np.float64))
    unique, inverse = np.unique(years, return_inverse=True)  # a date per observation
    out = []
    for y in unique:
        if not np.isfinite(y):
            out.append("")
            continue
        year = int(np.floor(y))
        start = datetime(year, 1, 1)
        days = (datetime(year + 1, 1, 1) - start).total_seconds()
        t = start + timedelta(seconds=round((y - year) * days))
        out.append(t.strftime("%Y-%m-%dT%H:%M:%S"))
    return np.array(out, dtype=object)[inverse.ravel()]
