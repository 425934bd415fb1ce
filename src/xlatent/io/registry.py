"""The I/O registry: every spectrum file format xlatent reads, in one table.

As in astropy's unified I/O registry (and lightkurve's ``io``), each format lives in its own
module with ``identify(path, head_bytes) -> bool`` and ``read(path, grid, **options)``:

==============  ================================  ==========================================
name            module                            files
==============  ================================  ==========================================
``pha``         :mod:`xlatent.io.pha`             OGIP type-I PHA (+ BACKFILE/ANCRFILE/RESPFILE)
``spectrumset`` :mod:`xlatent.io.spectrumset_hdf5`  xlatent's own SpectrumSet HDF5 files
``mmu``         :mod:`xlatent.io.mmu`             Multimodal Universe Chandra HDF5
==============  ================================  ==========================================

:data:`FORMATS` is the only list of them; :func:`identify_format` tries them in its order and
:func:`xlatent.io.ingest.ingest_paths` reads every file through it. A format whose files hold
one spectrum each (PHA) reads a :class:`~xlatent.io.pha.SpectrumRow`, so that a batch stacks
thousands of them at once; the others read a :class:`~xlatent.core.SpectrumSet`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.hdf5_layout import register_format_reader
from xlatent.io import mmu, pha, spectrumset_hdf5
from xlatent.io.fastfits import FileKindError, check_regular
from xlatent.io.pha import MAX_COUNTS_PER_CHANNEL, MAX_EXPOSURE_S, SpectrumRow

#: How many leading bytes ``identify`` functions are given.
HEAD_BYTES = 32


@dataclass(frozen=True)
class Format:
    """One input format: its name, how to recognise a file of it, and how to read one."""

    name: str
    identify: Callable[[Path, bytes], bool]
    read: Callable[..., SpectrumSet | SpectrumRow]


#: Every input format, in the order :func:`identify_format` tries them.
FORMATS: tuple[Format, ...] = (
    Format(pha.NAME, pha.identify, pha.read),
    Format(spectrumset_hdf5.NAME, spectrumset_hdf5.identify, spectrumset_hdf5.read),
    Format(mmu.NAME, mmu.identify, mmu.read),
)


def get_format(name: str) -> Format:
    """The registered format called ``name``."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    known = ", ".join(f.name for f in FORMATS)
    raise ValueError(f"unknown format {name!r}; known formats: {known}")


def identify_format(path: str | Path) -> str:
    """The name of the first format that recognises the file, else ``'unknown'``.

    Only regular files are opened; a special file, a dangling link or a symlink loop, like a
    damaged HDF5 file, raises :class:`InputError`.
    """
    path = Path(path)
    try:
        check_regular(path)
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    for fmt in FORMATS:
        if fmt.identify(path, head):
            return fmt.name
    return "unknown"


def read_part(
    path: Path, grid: EnergyGrid | None, format: str | None = None, **options: Any
) -> SpectrumSet | SpectrumRow:
    """What one file's format reads from it: a SpectrumRow (PHA) or a checked SpectrumSet."""
    name = format or identify_format(path)
    if name == "unknown":
        raise InputError(path, "neither a FITS PHA spectrum nor a known HDF5 layout")
    part = get_format(name).read(path, grid, **options)
    return check_values(part, path) if isinstance(part, SpectrumSet) else part


def read(
    path: str | Path, format: str | None = None, grid: EnergyGrid | None = None, **options: Any
) -> SpectrumSet:
    """One file of any registered format (identified from its content unless ``format``).

    PHA and MMU files go onto ``grid`` (default :meth:`EnergyGrid.default`); a SpectrumSet file
    keeps its own grid unless ``grid`` is given, when it must match. Raises
    :class:`InputError` for a file that cannot be read. (For many files, directories and globs,
    with bad files skipped: :func:`xlatent.read_spectra`.)
    """
    path = Path(path)
    part = read_part(path, grid, format, **options)
    if isinstance(part, SpectrumSet):
        return part
    s = stack_rows([part], grid or EnergyGrid.default())
    s.meta["spec_id"] = unique_ids(s.meta)
    return s.update_band_columns()


register_format_reader(read, identify_format)


def stack_rows(rows: Sequence[SpectrumRow], grid: EnergyGrid) -> SpectrumSet:
    """One SpectrumSet from single-spectrum rows on ``grid``."""
    meta = pd.DataFrame([r.meta for r in rows])
    return SpectrumSet(
        grid=grid,
        counts=np.stack([r.counts for r in rows]),
        background=np.stack([r.background for r in rows]),
        exposure_s=np.array([r.exposure_s for r in rows]),
        effective_area_cm2=np.stack([r.effective_area_cm2 for r in rows]),
        meta=meta,
    )


def check_values(s: SpectrumSet, path: Path) -> SpectrumSet:
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


def unique_ids(meta: pd.DataFrame) -> list[str]:
    """``OBSID_OBI_REGION`` for CSC detections, else the file stem; made unique."""
    # Column by column, not iterrows (a Series a row: ~30 us, most of an ingest's plan).
    cols = [meta[k].tolist() if k in meta else [None] * len(meta)
            for k in ("spec_id", "obsid", "obi", "region_id", "source_file")]  # fmt: skip
    ids, seen = [], {}
    for spec_id, *numbers, source in zip(*cols, strict=True):
        obsid, obi, region = (int_or(v, -1) for v in numbers)
        if isinstance(spec_id, str) and spec_id and not spec_id.startswith("spec"):
            base = spec_id
        elif obsid >= 0 and region >= 0:
            base = f"{obsid}_{obi:03d}_{region:04d}"
        else:
            base = Path(source).name.split(".")[0] if isinstance(source, str) else ""
            base = base or (spec_id if isinstance(spec_id, str) and spec_id else "spec")
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}_{n}")
    return ids


def int_or(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return default
