"""Format ``pha``: OGIP type-I PHA spectra (CSC ``pha3``, CIAO ``specextract``) onto the grid.

A source spectrum, its background (a ``BKG`` HDU of the same file, as in the CSC, or the file
named by BACKFILE) and its ARF/RMF become one row of a :class:`~xlatent.core.SpectrumSet`:
PI channels are apportioned onto the energy grid through the RMF's EBOUNDS, the background is
scaled to the source region with EXPOSURE x BACKSCAL x AREASCAL, and the ARF is averaged on
each grid bin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xlatent.core.errors import InputError
from xlatent.core.grid import EnergyGrid
from xlatent.instrument import ARF, RMF
from xlatent.io.fastfits import (
    FileKindError,
    FitsFormatError,
    TableHDU,
    iter_extensions,
    read_bytes,
)
from xlatent.io.grid_mapper import GridMapper
from xlatent.io.ogip_response import DEFAULT_CACHE, read_arf, read_rmf
from xlatent.io.response_context import PILEUP_KEYWORDS, pileup_context

NAME = "pha"
_CSC_NAME = re.compile(r"acisf(\d+)_(\d+)N\d+(?:_e[12])?_r(\d+)", re.IGNORECASE)
_NO_FILE = {"", "NONE", "NULL", "N/A"}
#: Counts above this in one channel are taken as a damaged file, not as data.
MAX_COUNTS_PER_CHANNEL = 1e9
#: Exposures above this (about 300 years) are taken as a damaged keyword.
MAX_EXPOSURE_S = 1e10


@dataclass
class PHA:
    """One spectrum HDU of a PHA file: counts per PI channel and the scaling keywords."""

    path: Path
    channels: np.ndarray
    counts: np.ndarray
    exposure_s: float
    backscal: np.ndarray | float
    areascal: np.ndarray | float
    header: dict[str, Any] = field(default_factory=dict)

    def keyword_file(self, key: str) -> str | None:
        """The file named by ANCRFILE/RESPFILE/BACKFILE, None when absent or 'none'."""
        value = str(self.header.get(key, "") or "").strip()
        value = re.sub(r"\[.*\]$", "", value).strip()  # drop a CFITSIO extension selector
        return None if value.upper() in _NO_FILE else value


@dataclass
class SpectrumRow:
    """A spectrum on the grid, ready to be stacked into a SpectrumSet."""

    counts: np.ndarray
    background: np.ndarray
    exposure_s: float
    effective_area_cm2: np.ndarray
    meta: dict[str, Any]


def parse_csc_name(path: str | Path) -> dict[str, int]:
    """OBS_ID, OBI and region id from a CSC file name (``acisf01575_001N001_r0085_pha3``)."""
    m = _CSC_NAME.search(Path(path).name)
    if not m:
        return {}
    return {"obsid": int(m.group(1)), "obi": int(m.group(2)), "region_id": int(m.group(3))}


def resolve_related(pha_path: Path, name: str) -> Path | None:
    """A file named in a PHA header, relative to the PHA file, tolerating a missing ``.gz``."""
    p = Path(name)
    candidates = [p] if p.is_absolute() else [pha_path.parent / p, p]
    for c in candidates:
        for variant in (c, c.with_name(c.name + ".gz"), c.with_name(c.name.removesuffix(".gz"))):
            if variant.is_file():
                return variant
    return None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


def spectrum_hdus(path: Path) -> list[TableHDU]:
    """Every PHA spectrum extension of a (possibly gzipped) FITS file."""
    try:
        raw = read_bytes(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    except FitsFormatError as exc:
        raise InputError(path, f"not a readable FITS file ({exc})") from None
    out = []
    try:
        for hdu in iter_extensions(raw):
            hdr = hdu.header
            extname = str(hdr.get("EXTNAME", "")).strip().upper()
            if extname == "SPECTRUM" or str(hdr.get("HDUCLAS1", "")).strip().upper() == "SPECTRUM":
                out.append(hdu)
    except FitsFormatError as exc:
        raise InputError(path, f"not a readable FITS file ({exc})") from None
    if not out:
        raise InputError(path, "no SPECTRUM extension: not an OGIP PHA file")
    return out


def read_pha_hdu(hdu: TableHDU, path: Path) -> PHA:
    """Counts, channels and scaling keywords of one PHA spectrum HDU (type I only)."""
    hdr = hdu.header
    instrument = str(hdr.get("INSTRUME", "")).strip().upper()
    if instrument.startswith("HRC"):
        raise InputError(path, "HRC data have no spectral resolution; only ACIS spectra are used")
    classes = f"{hdr.get('HDUCLAS3', '')} {hdr.get('HDUCLAS4', '')}".upper()
    if "TYPE:II" in classes:
        raise InputError(path, "PHA type II (grating) file; only type I spectra are supported")
    try:
        names = hdu.names
        exposure = float(hdr.get("EXPOSURE") if hdr.get("EXPOSURE") is not None else np.nan)
        if not np.isfinite(exposure) or exposure <= 0 or exposure > MAX_EXPOSURE_S:
            raise InputError(
                path, f"EXPOSURE is {hdr.get('EXPOSURE')!r}; it must be positive and finite"
            )
        if "COUNTS" in names:
            counts = np.asarray(hdu.column("COUNTS"), dtype=np.float64)
        elif "RATE" in names:
            counts = np.asarray(hdu.column("RATE"), dtype=np.float64) * exposure
        else:
            raise InputError(path, "PHA spectrum has neither a COUNTS nor a RATE column")
        if counts.ndim != 1:
            raise InputError(path, "PHA type II (grating) file; only type I spectra are supported")
        if "CHANNEL" in names:
            channels = np.asarray(hdu.column("CHANNEL"), dtype=np.int64)
        else:
            key = f"TLMIN{names.index('COUNTS' if 'COUNTS' in names else 'RATE') + 1}"
            channels = int(hdr.get(key, 1)) + np.arange(counts.size)
        backscal = _keyword_or_column(hdu, "BACKSCAL")
        areascal = _keyword_or_column(hdu, "AREASCAL")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"damaged PHA table ({_short(exc)})") from None
    if not np.all(np.isfinite(counts)):
        raise InputError(path, "counts are not finite (NaN or infinite)")
    if np.any(counts < 0):
        raise InputError(path, f"counts are negative (min {counts.min():.3g})")
    if np.any(counts > MAX_COUNTS_PER_CHANNEL):
        raise InputError(
            path, f"counts of {counts.max():.3g} in one channel (over {MAX_COUNTS_PER_CHANNEL:g})"
        )
    for key, value in (("BACKSCAL", backscal), ("AREASCAL", areascal)):
        v = np.asarray(value)
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            shown = repr(hdr.get(key)) if v.ndim == 0 else "a column with zero or bad values"
            raise InputError(path, f"{key} is {shown}; it must be positive and finite")
    keep = {
        k: hdr.get(k)
        for k in (
            "OBS_ID",
            "OBJECT",
            "INSTRUME",
            "HDUCLAS2",
            "RA_NOM",
            "DEC_NOM",
            "ANCRFILE",
            "RESPFILE",
            "BACKFILE",
            "DETNAM",
            *PILEUP_KEYWORDS,
        )
    }
    return PHA(path, channels, counts, exposure, backscal, areascal, keep)


def _keyword_or_column(hdu: TableHDU, key: str) -> Any:
    if key in hdu.names:
        return np.asarray(hdu.column(key), dtype=np.float64)
    value = hdu.header.get(key, 1.0)
    return 1.0 if value is None else float(value)


def _channel_counts(pha: PHA, rmf: RMF, what: str) -> np.ndarray:
    """Counts indexed like the RMF's EBOUNDS rows (channel ``first_channel + i``)."""
    if pha.counts.size != rmf.n_channels:
        raise InputError(
            pha.path,
            f"{what} has {pha.counts.size} channels but the RMF {Path(rmf.path).name} has "
            f"{rmf.n_channels}",
        )
    idx = pha.channels - rmf.first_channel
    if idx.min() < 0 or idx.max() >= rmf.n_channels:
        # Some writers number channels from 0 whatever TLMIN says; rows are then in order.
        idx = np.arange(pha.counts.size)
    out = np.zeros(rmf.n_channels)
    np.add.at(out, idx, pha.counts)
    return out


def _scale(pha: PHA) -> np.ndarray | float:
    return pha.exposure_s * np.asarray(pha.backscal) * np.asarray(pha.areascal)


def identify(path: Path, head: bytes) -> bool:
    """A FITS file, plain or gzipped (reading one that is not a PHA spectrum says why)."""
    return head[:2] == b"\x1f\x8b" or head.startswith(b"SIMPLE")


def read(
    path: str | Path, grid: EnergyGrid | None = None, *, mapper: GridMapper | None = None
) -> SpectrumRow:
    """One source spectrum with its background and responses, on ``grid`` (or ``mapper.grid``:
    a batch shares one mapper, so each response is put on the grid once)."""
    if mapper is None:
        mapper = GridMapper(grid or EnergyGrid.default(), DEFAULT_CACHE)
    return load_pha_spectrum(path, mapper)


def load_pha_spectrum(
    path: str | Path,
    mapper: GridMapper,
    arf_path: str | Path | None = None,
    rmf_path: str | Path | None = None,
    bkg_path: str | Path | None = None,
) -> SpectrumRow:
    """Read a source PHA with its background, ARF and RMF; return it on ``mapper.grid``.

    ``arf_path``/``rmf_path``/``bkg_path`` override the header keywords.
    """
    path = Path(path)
    hdus = spectrum_hdus(path)
    src_hdu = next((h for h in hdus if _hduclas2(h) != "BKG"), None)
    if src_hdu is None:
        raise InputError(path, "only background spectra (HDUCLAS2=BKG) in this file")
    src = read_pha_hdu(src_hdu, path)
    bkg_hdus = [h for h in hdus if _hduclas2(h) == "BKG"]
    inner_bkg = read_pha_hdu(bkg_hdus[0], path) if bkg_hdus else None

    rmf, rmf_file = _response(path, src, "RESPFILE", rmf_path, "RMF", mapper)
    arf, arf_file = _response(path, src, "ANCRFILE", arf_path, "ARF", mapper)
    bkg = _background(path, src, inner_bkg, bkg_path)

    chan = _channel_counts(src, rmf, "the source spectrum")
    counts = chan @ mapper.channel_matrix(rmf)
    if counts.sum() <= 0:
        lo, hi = mapper.grid.edges_kev[0], mapper.grid.edges_kev[-1]
        raise InputError(path, f"no counts in {lo:g}-{hi:g} keV")
    background = np.zeros_like(counts)
    if bkg is not None:
        bchan = _channel_counts(bkg, rmf, f"the background {bkg.path.name}")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.broadcast_to(_scale(src) / _scale(bkg), bchan.shape)
        if not np.all(np.isfinite(ratio)) or np.any(ratio < 0):
            raise InputError(
                path, f"background {bkg.path.name}: EXPOSURE/BACKSCAL/AREASCAL give no scaling"
            )
        background = (bchan * ratio) @ mapper.channel_matrix(rmf)

    _check_area(path, arf, mapper.arf_average(arf), mapper.grid)
    area = mapper.area(arf, rmf)

    ids = parse_csc_name(path)
    obsid = ids.get("obsid", _int_or(src.header.get("OBS_ID"), -1))
    meta = {
        "obsid": obsid,
        "obi": ids.get("obi", -1),
        "region_id": ids.get("region_id", -1),
        "object": str(src.header.get("OBJECT") or "").strip(),
        "source_file": str(path),
        "instrument": str(src.header.get("INSTRUME") or "").strip(),
        "backscal": float(np.mean(src.backscal)),
        "bkg_backscal": float(np.mean(bkg.backscal)) if bkg is not None else np.nan,
        "bkg_file": str(bkg.path) if bkg is not None else "",
        "arf_file": arf_file,  # the file this spectrum names (a cached response may have
        "rmf_file": rmf_file,  # been read through another path to the same file)
        "src_counts_total": float(src.counts.sum()),
        "bkg_counts_total": float(bkg.counts.sum()) if bkg is not None else 0.0,
        **pileup_context(src.header),
    }
    return SpectrumRow(counts, background, src.exposure_s, area, meta)


def _check_area(path: Path, arf: ARF, area: np.ndarray, grid: EnergyGrid) -> None:
    """The ARF (its mean ``area`` on each grid bin) must be positive on every grid bin inside
    its energy range (and cover one): checked before the RMF spreads it, which hides holes."""
    edges = grid.edges_kev
    inside = (edges[:-1] >= arf.energ_lo[0]) & (edges[1:] <= arf.energ_hi[-1])
    name = Path(arf.path).name
    if not inside.any():
        raise InputError(
            path, f"ARF {name} covers {arf.energ_lo[0]:g}-{arf.energ_hi[-1]:g} keV, not the grid"
        )
    bad = inside & ~(np.isfinite(area) & (area > 0))
    if bad.any():
        lo, hi = edges[:-1][bad].min(), edges[1:][bad].max()
        raise InputError(path, f"ARF {name} is zero or negative over {lo:.3g}-{hi:.3g} keV")


def _int_or(value: Any, default: int) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _response(
    path: Path, src: PHA, key: str, override: str | Path | None, kind: str, mapper: GridMapper
) -> tuple[Any, str]:
    """The ARF or RMF the spectrum names (from the cache when there is one), and its path."""
    if override is not None:
        target: Path | None = Path(override)
        if not target.is_file():
            raise InputError(path, f"{kind} {override} not found")
    else:
        name = src.keyword_file(key)
        if name is None:
            raise InputError(path, f"no {kind} given ({key} is empty or 'none')")
        target = resolve_related(path, name)
        if target is None:
            raise InputError(path, f"{kind} {name} ({key}) not found next to the spectrum")
    reader = read_rmf if kind == "RMF" else read_arf
    try:
        found = (
            reader(target) if mapper.cache is None else getattr(mapper.cache, kind.lower())(target)
        )
        return found, str(target)
    except InputError as exc:
        raise InputError(path, f"{kind} {target.name} unusable: {exc.reason}") from None


def _background(path: Path, src: PHA, inner: PHA | None, override: str | Path | None) -> PHA | None:
    if override is not None:
        target: Path | None = Path(override)
    else:
        name = src.keyword_file("BACKFILE")
        if name is None:
            return inner
        target = resolve_related(path, name)
        if target is None:
            raise InputError(path, f"background {name} (BACKFILE) not found next to the spectrum")
    if target is not None and target.resolve() == path.resolve():
        if inner is None:
            raise InputError(path, "BACKFILE names this file but it has no BKG spectrum")
        return inner
    try:
        hdus = spectrum_hdus(target)
        pick = next((h for h in hdus if _hduclas2(h) == "BKG"), hdus[0])
        return read_pha_hdu(pick, target)
    except InputError as exc:
        raise InputError(path, f"background {target.name} unusable: {exc.reason}") from None


def _hduclas2(hdu: TableHDU) -> str:
    return str(hdu.header.get("HDUCLAS2", "")).strip().upper()
