"""Finding OGIP ARF/RMF pairs in a folder (``xlatent simulate --responses DIR``).

Only the folder's own files are looked at (no subfolders). Pairs come, in this order of
preference, from

1. PHA files (``*.pha``, ``*.pi``, ``*pha*.fits``; source spectra, not backgrounds): their
   ANCRFILE/RESPFILE keywords, resolved inside the folder (a missing or extra ``.gz`` is
   tolerated; a path elsewhere is not followed);
2. a shared file stem: ``x.arf`` + ``x.rmf``, ``x_arf3.fits`` + ``x_rmf3.fits`` (``.gz`` allowed);
3. a lone RMF left over: paired with every ARF left over.

Every file is read by the capped, header-checked readers of :mod:`xlatent.io.ogip_response`;
a pair that cannot be used is skipped with a one-line reason, the others are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from xlatent.core.errors import InputError
from xlatent.instrument import Response
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.io.pha import _NO_FILE, spectrum_hdus

_FITS_TAIL = re.compile(r"\.(fits?|fts)$")
_ROLE = re.compile(r"(?:^|[._-])(arf|rmf|rsp|pha|pi)(\d*)$")
#: At most this many files are looked at in one folder (a folder of spectra, not an archive).
MAX_FILES = 10_000


@dataclass
class ResponsePairs:
    """Usable responses (with the ARF, RMF and PHA paths they came from) and what was skipped."""

    responses: list[Response] = field(default_factory=list)
    paths: list[tuple[Path, Path, Path | None]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _role_and_stem(path: Path) -> tuple[str, str]:
    """('arf' | 'rmf' | 'pha' | '', stem without the role token) of a file name."""
    name = path.name.lower().removesuffix(".gz")
    m = _ROLE.search(name)
    if m is not None:  # x.arf, x.rmf, x.pha, x.pi
        role = m.group(1)
        stem = name[: m.start()] + m.group(2)
    else:
        base = _FITS_TAIL.sub("", name)
        m = _ROLE.search(base)
        if m is None:
            return "", base
        role = m.group(1)
        stem = base[: m.start()] + m.group(2)  # x_arf3.fits -> x3
    role = {"rsp": "rmf", "pi": "pha"}.get(role, role)
    return role, stem


def _in_folder(folder: Path, name: str) -> Path | None:
    """The file a PHA keyword names, inside ``folder`` only (``.gz`` added or dropped)."""
    base = re.sub(r"\[.*\]$", "", name.strip()).strip()
    if base.upper() in _NO_FILE:
        return None
    base = Path(base).name
    for variant in (base, base + ".gz", base.removesuffix(".gz")):
        p = folder / variant
        if p.is_file():
            return p
    return None


def _from_pha(folder: Path, pha: Path, found: ResponsePairs) -> tuple[Path, Path] | None:
    try:
        hdus = spectrum_hdus(pha)
    except InputError as exc:
        found.skipped.append((pha, exc.reason))
        return None
    hdr = hdus[0].header
    if str(hdr.get("HDUCLAS2", "")).strip().upper() == "BKG":
        return None  # a background spectrum names no response
    arf_key, rmf_key = str(hdr.get("ANCRFILE", "") or ""), str(hdr.get("RESPFILE", "") or "")
    if rmf_key.strip().upper() in _NO_FILE | {""}:
        return None
    arf, rmf = _in_folder(folder, arf_key), _in_folder(folder, rmf_key)
    if rmf is None or (arf is None and arf_key.strip().upper() not in _NO_FILE):
        missing = rmf_key if rmf is None else arf_key
        found.skipped.append((pha, f"names {missing.strip()!r}, which is not in {folder}"))
        return None
    return (arf, rmf) if arf is not None else None


def find_response_pairs(folder: str | Path) -> ResponsePairs:
    """Every usable ARF/RMF pair among the files of ``folder`` (see the module docstring)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    found = ResponsePairs()
    if len(files) > MAX_FILES:
        found.skipped.append((folder, f"{len(files)} files; only the first {MAX_FILES} used"))
        files = files[:MAX_FILES]
    roles: dict[str, list[Path]] = {"arf": [], "rmf": [], "pha": []}
    stems: dict[Path, str] = {}
    for p in files:
        role, stem = _role_and_stem(p)
        if role in roles:
            roles[role].append(p)
            stems[p] = stem
    pairs: list[tuple[Path, Path, Path | None]] = []
    for pha in roles["pha"]:
        pair = _from_pha(folder, pha, found)
        if pair is not None and pair not in [(a, r) for a, r, _ in pairs]:
            pairs.append((*pair, pha))
    used = {p for a, r, _ in pairs for p in (a, r)}
    arfs = [p for p in roles["arf"] if p not in used]
    rmfs = [p for p in roles["rmf"] if p not in used]
    by_stem = {stems[r]: r for r in rmfs}
    for arf in list(arfs):
        rmf = by_stem.get(stems[arf])
        if rmf is not None:
            pairs.append((arf, rmf, None))
            arfs.remove(arf)
            rmfs.remove(rmf)
    if len(rmfs) == 1:
        pairs += [(arf, rmfs[0], None) for arf in arfs]
        arfs = []
    for p in arfs + (rmfs if len(rmfs) > 1 else []):
        found.skipped.append((p, "no matching ARF/RMF (by PHA keywords or file stem)"))
    for arf, rmf, pha in pairs:
        try:
            response = Response(read_arf(arf), read_rmf(rmf), "" if pha is None else str(pha))
        except InputError as exc:
            found.skipped.append((Path(exc.path), exc.reason))
            continue
        found.responses.append(response)
        found.paths.append((arf, rmf, pha))
    return found
