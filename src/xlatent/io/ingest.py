"""Read spectra from files, directories and globs into one SpectrumSet.

:func:`read_spectra` is the entry point (``xlatent.read_spectra``); :func:`ingest_paths` is the
same batch returning an :class:`IngestResult` with every skipped file and its one-line reason.
Each file is read by its format's reader from the one table in :mod:`xlatent.io.registry`
(OGIP PHA with BACKFILE/ANCRFILE/RESPFILE, Multimodal Universe Chandra HDF5, SpectrumSet
files). A bad file is skipped with a one-line reason; nothing else is lost.
:func:`combine_by` (from :mod:`xlatent.io.combine`) sums the per-observation spectra of each
source into one (``xlatent ingest --combine-by name``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.errors import XlatentError
from xlatent.io import mmu
from xlatent.io.combine import combine_by
from xlatent.io.grid_mapper import GridMapper
from xlatent.io.ogip_response import DEFAULT_CACHE, ResponseCache
from xlatent.io.pha import _short
from xlatent.io.registry import identify_format, read_part, stack_rows, unique_ids

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
                kind = identify_format(q)
            except InputError:
                out.append(q)  # damaged or not a regular file: reading it says why
            else:
                if kind == mmu.NAME:
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
            part = read_part(f, grid, mapper=mapper)
            (sets if isinstance(part, SpectrumSet) else rows).append(part)
        except InputError as exc:
            skipped.append((str(f), exc.reason if exc.path == str(f) else str(exc)))
        except Exception as exc:  # any reader failure costs this file only, never the batch
            reason = str(exc).removeprefix(f"{f}: ") if isinstance(exc, XlatentError) else ""
            skipped.append((str(f), reason or f"unreadable ({_short(exc)})"))
    rows = _drop_backgrounds(rows, skipped)
    if rows:
        sets.insert(0, stack_rows(rows, grid))
    if not sets:
        return IngestResult(None, skipped)
    s = _concat(sets)
    s.update_band_columns()
    s.provenance = [
        *s.provenance,
        {"step": "ingest", "n": len(s), "skipped": len(skipped), "grid_bins": grid.n_bins},
    ]
    return IngestResult(s, skipped)


def _concat(sets: list[SpectrumSet]) -> SpectrumSet:
    """One set with unique ``spec_id`` s (made unique across the inputs before stacking)."""
    ids = unique_ids(pd.concat([s.meta for s in sets], ignore_index=True))
    start = 0
    for s in sets:
        s.meta["spec_id"] = ids[start : start + len(s)]
        start += len(s)
    return SpectrumSet.concat(sets) if len(sets) > 1 else sets[0]


def _progress(items: list, enabled: bool):  # noqa: ANN202
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="ingest", unit="file")


def read_spectra(
    paths: str | Path | Sequence[str | Path], grid: EnergyGrid | None = None, **kwargs
) -> SpectrumSet:
    """One entry point for every format; raises if nothing could be read."""
    result = ingest_paths(paths, grid=grid, **kwargs)
    if result.spectrum_set is None:
        reasons = "; ".join(f"{p}: {r}" for p, r in result.skipped[:3])
        raise InputError(str(paths), f"nothing could be ingested ({reasons})")
    return result.spectrum_set


__all__ = ["IngestResult", "combine_by", "discover", "ingest_paths", "read_spectra"]
