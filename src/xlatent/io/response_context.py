"""The observing context of a real Chandra ACIS response: chip, date and off-axis angle.

``response_context(arf_path, pha_path=None)`` reads the headers of an ARF (and, when given,
its PHA) and returns the parameters of the matching member of the response family
(:mod:`xlatent.instrument.family`): chip type, CCD, decimal year and off-axis angle.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from astropy.io import fits

from xlatent.instrument.family import CCD_CHIP_TYPE
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


def _float(header: fits.Header, key: str) -> float:
    try:
        return float(header[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


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
    theta = math.nan
    for h in headers:
        ra_p, dec_p = _float(h, "RA_PNT"), _float(h, "DEC_PNT")
        for ra_k, dec_k in (("RA", "DEC"), ("RA_TARG", "DEC_TARG")):
            ra, dec = _float(h, ra_k), _float(h, dec_k)
            if not any(math.isnan(v) for v in (ra, dec, ra_p, dec_p)):
                theta = angular_distance_arcmin(ra, dec, ra_p, dec_p)
                break
        if not math.isnan(theta):
            break
    return {
        "chip_type": CCD_CHIP_TYPE.get(ccd, "") if ccd is not None else "",
        "ccd_id": -1 if ccd is None else ccd,
        "epoch_year": decimal_year(date_obs) if date_obs else math.nan,
        "date_obs": date_obs,
        "theta_arcmin": theta,
        "detector": "" if ccd is None else ("ACIS-I" if ccd <= 3 else "ACIS-S"),
    }
