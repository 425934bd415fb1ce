"""The observing context of a real Chandra ACIS response: chip, date and off-axis angle.

``response_context(arf_path, pha_path=None)`` reads the headers of an ARF (and, when given,
its PHA) and returns the parameters of the matching member of the response family
(:mod:`xlatent.instrument.family`): chip type, CCD, decimal year and off-axis angle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from astropy.io import fits

from xlatent.core.pileup import frame_time_from_header
from xlatent.instrument.family import CCD_CHIP_TYPE, core_fraction
from xlatent.io.ogip_response import _find_hdu, _open


def decimal_year(date_obs: str) -> float:
    """``2001-10-05T00:33:43`` -> 2001.76 (fraction of that calendar year elapsed)."""
    t = datetime.fromisoformat(date_obs.strip().replace("Z", ""))
    start, end = datetime(t.year, 1, 1), datetime(t.year + 1, 1, 1)
    return t.year + (t - start).total_seconds() / (end - start).total_seconds()


def angular_distance_arcmin(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance (arcmin) between two (RA, Dec) positions in degrees (haversine)."""
    r1, d1, r2, d2 = (math.radians(v) for v in (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((r2 - r1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h)))) * 60.0


def _float(header: Mapping[str, Any], key: str) -> float:
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def off_axis_arcmin(header: Mapping[str, Any]) -> float:
    """Off-axis angle (arcmin) of a header's source (RA/DEC, else RA_TARG/DEC_TARG) from its
    pointing (RA_PNT/DEC_PNT); NaN when the header lacks either."""
    ra_p, dec_p = _float(header, "RA_PNT"), _float(header, "DEC_PNT")
    for ra_k, dec_k in (("RA", "DEC"), ("RA_TARG", "DEC_TARG")):
        ra, dec = _float(header, ra_k), _float(header, dec_k)
        if not any(math.isnan(v) for v in (ra, dec, ra_p, dec_p)):
            return angular_distance_arcmin(ra, dec, ra_p, dec_p)
    return math.nan


#: Frame time (s) of ACIS continuous clocking: one row read every 2.85 ms, no pile-up to speak
#: of (Chandra POG ch. 6.12).
CC_FRAME_TIME_S = 0.00285
#: The PHA keywords :func:`pileup_context` reads.
PILEUP_KEYWORDS = ("INSTRUME", "READMODE", "TIMEDEL", "EXPTIME", "DTCOR",
                   "RA", "DEC", "RA_TARG", "DEC_TARG", "RA_PNT", "DEC_PNT")  # fmt: skip


def pileup_context(header: Mapping[str, Any]) -> dict[str, float]:
    """``theta_arcmin``, ``frame_time_s`` and ``psf_core_fraction`` of a PHA spectrum from its
    keywords (:mod:`xlatent.core.pileup`). Not ACIS: NaN frame time and core (it cannot pile
    as the model knows); an unknown off-axis angle counts as on-axis (the most piled case)."""
    theta = off_axis_arcmin(header)
    if str(header.get("INSTRUME") or "").strip().upper() != "ACIS":
        return {"theta_arcmin": theta, "frame_time_s": math.nan, "psf_core_fraction": math.nan}
    if str(header.get("READMODE") or "").strip().upper().startswith("CONTINUOUS"):
        frame = CC_FRAME_TIME_S
    else:
        keys = ("TIMEDEL", "EXPTIME", "DTCOR")
        frame = frame_time_from_header(*(_float(header, k) for k in keys))
    core = float(core_fraction(0.0 if math.isnan(theta) else theta))
    return {"theta_arcmin": theta, "frame_time_s": frame, "psf_core_fraction": core}


def _ccd_from_detnam(detnam: str) -> int | None:
    """``ACIS-7`` -> 7; ``ACIS-67`` (several chips) -> None."""
    digits = detnam.strip().upper().removeprefix("ACIS-")
    return int(digits) if len(digits) == 1 and digits.isdigit() else None


def _pha_context(path: Path) -> tuple[fits.Header, int | None]:
    """The SPECTRUM header and the CCD of the source region (first GTI extension's CCD_ID)."""
    with _open(path, "PHA") as hdul:
        spec = _find_hdu(hdul, ("SPECTRUM",))
        header = (spec if spec is not None else hdul[0]).header.copy()
        ccd = None
        for hdu in hdul[1:]:
            if str(hdu.header.get("EXTNAME", "")).strip().upper().startswith("GTI"):
                if "CCD_ID" in hdu.header:
                    ccd = int(hdu.header["CCD_ID"])
                    break
    return header, ccd


def response_context(arf_path: str | Path, pha_path: str | Path | None = None) -> dict:
    """Chip type, CCD, date and off-axis angle of a real ACIS ARF (and its PHA).

    Returns ``chip_type`` ("FI"/"BI", "" unknown), ``ccd_id`` (-1 unknown), ``epoch_year``
    (from DATE-OBS), ``date_obs``, ``theta_arcmin`` (source RA/DEC of the PHA's SPECTRUM
    header, else RA_TARG/DEC_TARG, from RA_PNT/DEC_PNT; NaN when unknown) and ``detector``
    ("ACIS-I" for CCDs 0-3, "ACIS-S" for 4-9).
    """
    with _open(Path(arf_path), "ARF") as hdul:
        hdu = _find_hdu(hdul, ("SPECRESP",))
        arf_h = (hdu if hdu is not None else hdul[0]).header.copy()
    pha_h, pha_ccd = _pha_context(Path(pha_path)) if pha_path is not None else (None, None)
    ccd: int | None = int(arf_h["CCD_ID"]) if "CCD_ID" in arf_h else None
    if ccd is None:
        ccd = _ccd_from_detnam(str(arf_h.get("DETNAM", "")))
    if ccd is None:
        ccd = pha_ccd
    headers = [h for h in (pha_h, arf_h) if h is not None]
    date_obs = next((str(h["DATE-OBS"]).strip() for h in headers if "DATE-OBS" in h), "")
    theta = next((t for t in map(off_axis_arcmin, headers) if not math.isnan(t)), math.nan)
    return {
        "chip_type": CCD_CHIP_TYPE.get(ccd, "") if ccd is not None else "",
        "ccd_id": -1 if ccd is None else ccd,
        "epoch_year": decimal_year(date_obs) if date_obs else math.nan,
        "date_obs": date_obs,
        "theta_arcmin": theta,
        "detector": "" if ccd is None else ("ACIS-I" if ccd <= 3 else "ACIS-S"),
    }
