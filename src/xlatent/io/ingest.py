"""Ingest spectra from files, directories and globs into one SpectrumSet.

One reader per format behind one entry point (like astropy's ``Table.read`` registry):
OGIP PHA (with BACKFILE/ANCRFILE/RESPFILE), Multimodal Universe Chandra HDF5, and existing
SpectrumSet files. A bad file is skipped with a one-line reason; nothing else is lost.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.errors import XlatentError
from xlatent.core.spectrumset import FORMAT_NAME
from xlatent.io.fastfits import FileKindError, check_regular
from xlatent.io.ogip_response import DEFAULT_CACHE, ResponseCache
from xlatent.io.pha import (
    MAX_COUNTS_PER_CHANNEL,
    MAX_EXPOSURE_S,
    GridMapper,
    _short,
    load_pha_spectrum,
    parse_csc_name,
)

_PHA_PATTERNS = ("*_pha3.fits", "*_pha3.fits.gz", "*.pi", "*.pi.gz", "*.pha", "*.pha.gz")
_HDF5_PATTERNS = ("*.h5", "*.hdf5")
_NOT_SOURCE = ("_bg.", "_bkg.", "_back.", ".bkg", "bkg.pi", "_bg.pi")


@dataclass
class IngestResult:
    """What an ingest produced: the set, and each skipped file with its reason."""

    spectrum_set: SpectrumSet | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_ingested(self) -> int:
        return 0 if self.spectrum_set is None else len(self.spectrum_set)

    def summary(self) -> str:
        lines = [f"ingested {self.n_ingested} spectra, skipped {len(self.skipped)} files"]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


def discover(
    paths: Iterable[str | Path], exclude: Iterable[str | Path] = ()
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, directories (recursive) and globs into candidate spectrum files.

    Directories contribute PHA source files (``*_pha3.fits[.gz]``, ``*.pi``, ``*.pha``) and
    Multimodal Universe HDF5 files only: files named as a background (``*_bg.pi``,
    ``*_bkg.pha``) are left out (and :func:`ingest_paths` drops any other file that is only a
    BACKFILE of another), and so is every HDF5 file that is not a Multimodal Universe file,
    xlatent's own SpectrumSet outputs included (those are read only when named explicitly).
    Symlinked directories are followed once each, never into a loop. Files named explicitly
    are kept whatever they are, so that reading them reports what is wrong (a FIFO, a symlink
    loop, a dangling link). Paths in ``exclude`` are never returned, however they are reached.
    Returns the files and, for names that match nothing, ``(name, reason)`` pairs.
    """
    excluded = {_real(e) for e in exclude}
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for item in paths:
        p = Path(item)
        if _is_dir(p):
            found.extend(_scan_dir(p, excluded, missing))
        elif _lexists(p):
            found.append(p)
        elif "**" in str(item):
            matches = _recursive_glob(str(item), missing)
            found.extend(matches)
            if not matches:
                missing.append((str(item), "no such file, directory or glob match"))
        else:
            try:
                matches = sorted(glob.glob(str(item)))
            except (OSError, ValueError):
                matches = []
            found.extend(Path(m) for m in matches if not _is_dir(Path(m)))
            if not matches:
                missing.append((str(item), "no such file, directory or glob match"))
    unique: dict[str, Path] = {}
    for f in found:
        key = _real(f)
        if key not in excluded:
            unique.setdefault(key, f)
    return sorted(unique.values(), key=lambda f: str(f)), missing


def _real(p: str | Path) -> str:
    """The canonical path (symlinks resolved as far as they go); never raises."""
    try:
        return os.path.realpath(p)
    except (OSError, ValueError, RuntimeError):
        return os.path.abspath(p)


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def _lexists(p: Path) -> bool:
    try:
        return os.path.lexists(p)
    except (OSError, ValueError):
        return False


def _walk(root: Path, missing: list[tuple[str, str]]) -> Iterable[Path]:
    """Every non-directory entry under ``root``; each real directory is entered once."""
    seen: set[tuple[int, int]] = set()

    def onerror(exc: OSError) -> None:
        missing.append((str(exc.filename), f"cannot list directory ({exc.strerror or exc})"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a symlink back to a directory already walked
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _scan_dir(root: Path, excluded: set[str], missing: list[tuple[str, str]]) -> list[Path]:
    out = []
    for q in _walk(root, missing):
        name = q.name
        if any(t in name.lower() for t in _NOT_SOURCE) or _real(q) in excluded:
            continue
        if any(fnmatch.fnmatchcase(name, pat) for pat in _PHA_PATTERNS):
            out.append(q)
        elif any(fnmatch.fnmatchcase(name, pat) for pat in _HDF5_PATTERNS):
            try:
                kind = sniff(q)
            except InputError:
                out.append(q)  # damaged or not a regular file: reading it says why
            else:
                if kind == "mmu":
                    out.append(q)
    return out


def _recursive_glob(pattern: str, missing: list[tuple[str, str]]) -> list[Path]:
    """``**`` globs through :func:`_walk`, so a symlink loop cannot make them run forever."""
    head = pattern.split("**", 1)[0]
    root = Path(head.rsplit("/", 1)[0] if "/" in head else ".")
    if glob.has_magic(str(root)) or not _is_dir(root):
        return []
    flat = pattern.replace("**/", "")
    out = []
    for q in _walk(root, missing):
        text = str(q) if head.startswith(str(root)) else os.path.relpath(q)
        if fnmatch.fnmatchcase(text, pattern) or fnmatch.fnmatchcase(text, flat):
            out.append(q)
    return out


def _drop_backgrounds(rows: list, skipped: list[tuple[str, str]]) -> list:
    """Remove files that are only another file's BACKFILE (not sources themselves).

    A file named by another spectrum's BACKFILE is a pure background when it names no
    background of its own; a CSC pha3 names itself, so it stays a source. Done after reading,
    so every file is opened once.
    """
    targets = {
        _real(r.meta["bkg_file"])
        for r in rows
        if r.meta["bkg_file"] and _real(r.meta["bkg_file"]) != _real(r.meta["source_file"])
    }
    if not targets:
        return rows
    skipped[:] = [(p, why) for p, why in skipped if _real(p) not in targets]
    return [
        r for r in rows if not (_real(r.meta["source_file"]) in targets and not r.meta["bkg_file"])
    ]


def ingest_paths(
    paths: str | Path | Sequence[str | Path],
    grid: EnergyGrid | None = None,
    progress: bool = True,
    cache: ResponseCache | None = DEFAULT_CACHE,
    exclude: str | Path | Iterable[str | Path] = (),
) -> IngestResult:
    """Ingest spectra into one SpectrumSet on ``grid`` (default :meth:`EnergyGrid.default`).

    Every file that cannot be used, for whatever reason (an exception of any type from its
    reader, a FIFO, a symlink loop, a damaged or hostile file), is skipped with a one-line
    reason in ``result.skipped`` and the batch goes on; the rest are kept, in file-name order.
    Paths in ``exclude`` (such as the output file about to be written) are never read.
    """
    grid = grid or EnergyGrid.default()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if isinstance(exclude, (str, Path)):
        exclude = [exclude]
    files, skipped = discover(paths, exclude=exclude)
    mapper = GridMapper(grid, cache)
    rows = []
    sets: list[SpectrumSet] = []
    bar = _progress(files, progress)
    for f in bar:
        try:
            kind = sniff(f)
            if kind == "pha":
                rows.append(load_pha_spectrum(f, mapper))
            elif kind == "spectrumset":
                s = _read_spectrum_set(f)
                if s.grid != grid:
                    raise InputError(f, f"SpectrumSet on another grid ({s.grid})")
                sets.append(_check_values(s, f))
            elif kind == "mmu":
                sets.append(_check_values(read_mmu_hdf5(f, grid), f))
            else:
                raise InputError(f, "neither a FITS PHA spectrum nor a known HDF5 layout")
        except InputError as exc:
            skipped.append((str(f), exc.reason if exc.path == str(f) else str(exc)))
        except Exception as exc:  # any reader failure costs this file only, never the batch
            reason = str(exc).removeprefix(f"{f}: ") if isinstance(exc, XlatentError) else ""
            skipped.append((str(f), reason or f"unreadable ({_short(exc)})"))
    rows = _drop_backgrounds(rows, skipped)
    if rows:
        sets.insert(0, _stack(rows, grid))
    if not sets:
        return IngestResult(None, skipped)
    s = _concat(sets)
    s.update_band_columns()
    s.provenance = [
        *s.provenance,
        {"step": "ingest", "n": len(s), "skipped": len(skipped), "grid_bins": grid.n_bins},
    ]
    return IngestResult(s, skipped)


#: ``xlatent.ingest`` is this function.
ingest = ingest_paths


def _read_spectrum_set(path: Path) -> SpectrumSet:
    try:
        check_regular(path)
        return SpectrumSet.read(path)
    except XlatentError:
        raise
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except Exception as exc:  # h5py and numpy raise many types for damaged files
        raise InputError(path, f"damaged SpectrumSet file ({_short(exc)})") from None


def _check_values(s: SpectrumSet, path: Path) -> SpectrumSet:
    """Refuse a set with counts, background, exposure or area that no spectrum can have."""
    checks = (
        ("counts", s.counts, 0.0, MAX_COUNTS_PER_CHANNEL),
        ("background", s.background, 0.0, MAX_COUNTS_PER_CHANNEL),
        ("effective_area_cm2", s.effective_area_cm2, 0.0, np.inf),
    )
    for name, values, lo, hi in checks:
        bad = ~np.isfinite(values) | (values < lo) | (values > hi)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise InputError(path, f"row {row}: {name} negative, not finite or absurd")
    bad = ~np.isfinite(s.exposure_s) | (s.exposure_s <= 0) | (s.exposure_s > MAX_EXPOSURE_S)
    if bad.any():
        raise InputError(path, f"row {int(np.argmax(bad))}: exposure_s is not positive")
    return s


def _concat(sets: list[SpectrumSet]) -> SpectrumSet:
    """One set with unique ``spec_id`` s (made unique across the inputs before stacking)."""
    ids = _unique_ids(pd.concat([s.meta for s in sets], ignore_index=True))
    start = 0
    for s in sets:
        s.meta["spec_id"] = ids[start : start + len(s)]
        start += len(s)
    return SpectrumSet.concat(sets) if len(sets) > 1 else sets[0]


def sniff(path: Path) -> str:
    """'pha', 'spectrumset', 'mmu' or 'unknown', from the file's first bytes.

    Only regular files are opened; a special file, a dangling link or a symlink loop, like a
    damaged HDF5 file, raises :class:`InputError`.
    """
    try:
        check_regular(path)
        with open(path, "rb") as fh:
            head = fh.read(8)
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if head[:2] == b"\x1f\x8b" or head.startswith(b"SIMPLE"):
        return "pha"
    if head.startswith(b"\x89HDF"):
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                if isinstance(fmt, bytes):
                    fmt = fmt.decode("utf-8", "replace")
                if fmt == FORMAT_NAME:
                    return "spectrumset"
                if "spectrum_flux" in f and "spectrum_ene_lo" in f:
                    return "mmu"
        except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ...
            raise InputError(path, f"damaged HDF5 file ({_short(exc)})") from None
    return "unknown"


def _stack(rows: list, grid: EnergyGrid) -> SpectrumSet:
    meta = pd.DataFrame([r.meta for r in rows])
    return SpectrumSet(
        grid=grid,
        counts=np.stack([r.counts for r in rows]),
        background=np.stack([r.background for r in rows]),
        exposure_s=np.array([r.exposure_s for r in rows]),
        effective_area_cm2=np.stack([r.effective_area_cm2 for r in rows]),
        meta=meta,
    )


def _unique_ids(meta: pd.DataFrame) -> list[str]:
    """``OBSID_OBI_REGION`` for CSC detections, else the file stem; made unique."""
    ids, seen = [], {}
    for _, row in meta.iterrows():
        spec_id = row.get("spec_id")
        obsid, obi, region = (_int_or(row.get(k), -1) for k in ("obsid", "obi", "region_id"))
        if isinstance(spec_id, str) and spec_id and not spec_id.startswith("spec"):
            base = spec_id
        elif obsid >= 0 and region >= 0:
            base = f"{obsid}_{obi:03d}_{region:04d}"
        else:
            source = row.get("source_file")
            base = Path(source).name.split(".")[0] if isinstance(source, str) else ""
            base = base or (spec_id if isinstance(spec_id, str) and spec_id else "spec")
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}_{n}")
    return ids


def _int_or(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return default


def _progress(items: list, enabled: bool):  # noqa: ANN202
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="ingest", unit="file")


# --------------------------------------------------------------------- Multimodal Universe
#: MMU catalogue columns copied into meta under their CSC names.
#: Most rows a Multimodal Universe file may hold (a hostile header could claim billions).
MAX_MMU_ROWS = 10_000_000
_MMU_ID = {"name": "name", "obsid": "obsid", "obi": "obi", "region_id": "region_id"}


def read_mmu_hdf5(path: str | Path, grid: EnergyGrid | None = None) -> SpectrumSet:
    """A Multimodal Universe Chandra HDF5 file (one row per source) onto ``grid``.

    The MMU stores Sherpa's background-subtracted, grouped spectrum as ``spectrum_flux``
    (counts s^-1 keV^-1) on ``spectrum_ene_lo``/``spectrum_ene_hi`` (keV) with
    ``spectrum_flux_err``, and no exposure or ARF. Counts are flux x width x exposure, with the
    exposure taken from an ``exposure``/``livetime`` column when there is one, else estimated
    per source from the Poisson errors (flux / (err^2 x width), the median over bins), which is
    exact for background-free grouped counts. The spectra are already net, so ``background``
    is 0, and the effective area is unknown (1 cm^2, flagged by ``effective_area_known``).
    """
    path = Path(path)
    grid = grid or EnergyGrid.default()
    from xlatent.core.grid import regrid_counts

    try:
        size = check_regular(path).st_size
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        with h5py.File(path, "r") as f:
            n = len(f["spectrum_flux"])
            if n > min(MAX_MMU_ROWS, size):  # every row takes at least a byte of the file
                raise InputError(path, f"{n} rows in a {size}-byte file")
            cols = {}
            for key in f:
                ds = f[key]
                if not isinstance(ds, h5py.Dataset) or key.startswith("spectrum_"):
                    continue
                if ds.shape[:1] != (n,) or ds.ndim != 1 or ds.dtype.kind == "O":
                    continue
                values = ds[:]
                if values.dtype.kind == "S":
                    values = np.char.decode(values, "utf-8")
                cols[key] = values
            exposure_col = next((c for c in ("exposure", "livetime", "exptime") if c in cols), None)
            counts = np.zeros((n, grid.n_bins))
            exposure = np.zeros(n)
            for i in range(n):
                lo = np.asarray(f["spectrum_ene_lo"][i], dtype=np.float64)
                hi = np.asarray(f["spectrum_ene_hi"][i], dtype=np.float64)
                flux = np.asarray(f["spectrum_flux"][i], dtype=np.float64)
                err = np.asarray(f["spectrum_flux_err"][i], dtype=np.float64)
                if not (lo.shape == hi.shape == flux.shape == err.shape and lo.ndim == 1):
                    raise InputError(path, f"row {i}: spectrum arrays differ in length")
                if not np.all(np.isfinite(lo) & np.isfinite(hi)) or np.any(hi <= lo):
                    raise InputError(path, f"row {i}: energy bins not finite or not increasing")
                if lo.size > 1 and np.any(lo[1:] < hi[:-1]):
                    raise InputError(path, f"row {i}: energy bins overlap or are out of order")
                if not np.all(np.isfinite(flux)):
                    raise InputError(path, f"row {i}: spectrum_flux is not finite")
                width = hi - lo
                if exposure_col is not None:
                    t = float(cols[exposure_col][i])
                else:
                    ok = (flux > 0) & (err > 0) & (width > 0)
                    t = float(np.median(flux[ok] / (err[ok] ** 2 * width[ok]))) if ok.any() else 0
                if not np.isfinite(t) or t <= 0 or t > MAX_EXPOSURE_S:
                    raise InputError(path, f"row {i}: cannot determine an exposure")
                exposure[i] = t
                counts[i] = regrid_counts(np.clip(flux, 0, None) * width * t, lo, hi, grid)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a Multimodal Universe Chandra file ({exc})") from None
    meta = pd.DataFrame(cols)
    for key in ("obsid", "obi", "region_id"):
        if key in meta:
            meta[key] = pd.to_numeric(meta[key], errors="coerce").fillna(-1).astype(int)
    meta["source_file"] = str(path)
    meta["effective_area_known"] = False
    meta["exposure_estimated"] = exposure_col is None
    # Catalogue hardness ratios keep their CSC values under a catalogue prefix; the set's own
    # count-based ones are recomputed from the spectra.
    for hr in ("hard_hm", "hard_hs", "hard_ms"):
        if hr in meta:
            meta = meta.rename(columns={hr: f"csc_{hr}"})
    return SpectrumSet(
        grid=grid,
        counts=counts,
        background=np.zeros_like(counts),
        exposure_s=exposure,
        effective_area_cm2=np.ones_like(counts),
        meta=meta,
    ).update_band_columns()


def read_spectra(
    paths: str | Path | Sequence[str | Path], grid: EnergyGrid | None = None, **kwargs
) -> SpectrumSet:
    """One entry point for every format; raises if nothing could be read."""
    result = ingest_paths(paths, grid=grid, **kwargs)
    if result.spectrum_set is None:
        reasons = "; ".join(f"{p}: {r}" for p, r in result.skipped[:3])
        raise InputError(str(paths), f"nothing could be ingested ({reasons})")
    return result.spectrum_set


__all__ = [
    "IngestResult",
    "discover",
    "ingest",
    "ingest_paths",
    "parse_csc_name",
    "read_mmu_hdf5",
    "read_spectra",
    "sniff",
]
