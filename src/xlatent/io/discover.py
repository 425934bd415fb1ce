"""Finding spectrum files: files, directories (recursive) and globs -> candidate files.

:func:`discover` is what :func:`xlatent.io.ingest.ingest_paths` reads from: PHA source files
and Multimodal Universe HDF5 files in directories, anything named explicitly.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections.abc import Iterable
from pathlib import Path

from xlatent.core import InputError
from xlatent.io import mmu
from xlatent.io.registry import identify_format

_PHA_PATTERNS = ("*_pha3.fits", "*_pha3.fits.gz", "*.pi", "*.pi.gz", "*.pha", "*.pha.gz")
_HDF5_PATTERNS = ("*.h5", "*.hdf5")
_NOT_SOURCE = ("_bg.", "_bkg.", "_back.", ".bkg", "bkg.pi", "_bg.pi")


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
    excluded = {real_path(e) for e in exclude}
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
    for f, key in zip(found, real_paths(found), strict=True):
        if key not in excluded:
            unique.setdefault(key, f)
    return sorted(unique.values(), key=lambda f: str(f)), missing


def real_path(p: str | Path) -> str:
    """The canonical path (symlinks resolved as far as they go); never raises."""
    try:
        return os.path.realpath(p)
    except (OSError, ValueError, RuntimeError):
        return os.path.abspath(p)


def real_paths(paths: Iterable[str | Path]) -> list[str]:
    """:func:`real_path` of each path, resolving each directory once.

    ``os.path.realpath`` lstat()s every component of every path in Python (~20 us a file,
    most of discovering 100k files); a file that is not a symlink resolves to its resolved
    directory joined with its name, so only that one lstat is needed a file.
    """
    dirs: dict[str, str] = {}
    out = []
    for p in paths:
        if not isinstance(p, (str, Path)) or "\0" in (s := str(p)):
            out.append(real_path(p))  # whatever real_path makes of it (or raises)
            continue
        head, tail = os.path.split(s)
        if tail in ("", os.curdir, os.pardir) or os.path.islink(s):
            out.append(real_path(s))
            continue
        d = dirs.get(head)
        if d is None:
            d = dirs[head] = real_path(head or os.curdir)
        out.append(os.path.join(d, tail))
    return out


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
        if any(t in name.lower() for t in _NOT_SOURCE):
            continue
        if any(fnmatch.fnmatchcase(name, pat) for pat in _PHA_PATTERNS):
            out.append(q)  # excluded paths are dropped by discover (one realpath a file)
        elif any(fnmatch.fnmatchcase(name, pat) for pat in _HDF5_PATTERNS):
            if real_path(q) in excluded:  # never opened (the output file, say)
                continue
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


__all__ = ["discover", "real_path", "real_paths"]
