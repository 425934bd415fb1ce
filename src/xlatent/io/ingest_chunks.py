"""Ingest in chunks of files: what one task reads, and how the chunks become one set.

A chunk is a run of consecutive discovered files. :func:`read_chunk` (a worker's task, or a plain
call when ingest runs in this process) reads it into a :class:`Chunk`: its PHA rows stacked
into one set, the whole sets its HDF5 files held, their band columns, and the files it skipped.
:func:`plan` then does, on the chunks' metadata only, everything :func:`ingest_paths` does
across files (drop pure backgrounds, PHA rows before HDF5 sets, unique ``spec_id`` s,
provenance), so the set is the same whatever the chunks and however many workers read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core import CSC_BANDS_KEV, EnergyGrid, InputError, SpectrumSet, hardness_columns
from xlatent.core.area_kind import AREA_DEFINITION
from xlatent.core.errors import XlatentError
from xlatent.io.discover import real_path, real_paths
from xlatent.io.grid_mapper import GridMapper
from xlatent.io.ogip_response import DEFAULT_CACHE
from xlatent.io.pha import _short
from xlatent.io.registry import read_part, stack_rows, unique_ids

#: Files per chunk (one task): big enough that scheduling costs nothing next to reading,
#: small enough that a chunk's arrays (~3 kB per spectrum) stay a few MB.
CHUNK_FILES = 500


@dataclass
class Chunk:
    """What one run of files gave: PHA rows (stacked, in file order), whole sets (HDF5
    files, in file order), the band columns of each, and the skipped files."""

    n_files: int
    rows: SpectrumSet | None = None
    rows_band: pd.DataFrame | None = None
    sets: list[SpectrumSet] = field(default_factory=list)
    set_bands: list[pd.DataFrame] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def band_frame(s: SpectrumSet) -> pd.DataFrame:
    """The band columns of :meth:`SpectrumSet.update_band_columns`, each row on its own.

    ``band_sums`` is a matrix-vector product whose last bits depend on how many rows the
    BLAS kernel gets; summing each row's weighted bins does not, so a spectrum's band counts
    are the same whichever chunk (and however many files) it was read with.
    """
    net = {}
    for code, (lo, hi) in CSC_BANDS_KEV.items():
        g = s.grid
        ov = np.clip(np.minimum(g.hi_kev, hi) - np.maximum(g.lo_kev, lo), 0, None)
        net[code] = (s.net_counts * (ov / g.widths_kev)).sum(axis=1)
    cols = {f"net_counts_{code}": v for code, v in net.items()}
    return pd.DataFrame({**cols, **hardness_columns(net)})


def read_files(files: Sequence[Path], grid: EnergyGrid, mapper: GridMapper) -> Chunk:
    """Read ``files`` into a :class:`Chunk`; a file that fails costs that file only."""
    rows, chunk = [], Chunk(len(files))
    for f in files:
        try:
            part = read_part(f, grid, mapper=mapper)
            if isinstance(part, SpectrumSet):
                chunk.sets.append(part)
                chunk.set_bands.append(band_frame(part))
            else:
                rows.append(part)
        except InputError as exc:
            chunk.skipped.append((str(f), exc.reason if exc.path == str(f) else str(exc)))
        except Exception as exc:  # any reader failure costs this file only, never the batch
            reason = str(exc).removeprefix(f"{f}: ") if isinstance(exc, XlatentError) else ""
            chunk.skipped.append((str(f), reason or f"unreadable ({_short(exc)})"))
    if rows:
        chunk.rows = stack_rows(rows, grid)
        chunk.rows_band = band_frame(chunk.rows)
    return chunk


#: One grid mapper per grid in each worker process (its channel matrices serve every chunk).
_MAPPERS: dict[tuple[bytes, bool], GridMapper] = {}


def read_chunk(files: list[str], grid: EnergyGrid, use_cache: bool = True) -> Chunk:
    """The task: read ``files`` with this process's response cache and grid mapper."""
    key = (grid.edges_kev.tobytes(), use_cache)
    if key not in _MAPPERS:
        _MAPPERS[key] = GridMapper(grid, DEFAULT_CACHE if use_cache else None)
    return read_files([Path(f) for f in files], grid, _MAPPERS[key])


def chunked(files: Sequence[Path], size: int = CHUNK_FILES) -> list[list[str]]:
    """Consecutive runs of at most ``size`` files (as strings: cheap to send)."""
    return [[str(f) for f in files[a : a + size]] for a in range(0, len(files), size)]


@dataclass
class Plan:
    """The set the chunks make, but for its arrays: final ``meta`` (spec_ids and band
    columns in place), which PHA rows of each chunk are kept, provenance and skipped files."""

    meta: pd.DataFrame | None
    keep: list[np.ndarray]
    provenance: list[dict[str, Any]]
    has_truth: bool
    skipped: list[tuple[str, str]]

    def pieces(self, chunks: Sequence[Chunk]) -> list[tuple[int, int | None]]:
        """The final row order as (chunk, None: its PHA rows | j: its j-th set): every
        chunk's kept PHA rows first, then every HDF5 set (as one in-memory ingest stacks)."""
        rows = [(i, None) for i, k in enumerate(self.keep) if k.any()]
        return rows + [(i, j) for i, c in enumerate(chunks) for j in range(len(c.sets))]


def plan(chunks: Sequence[Chunk], skipped: list[tuple[str, str]], grid: EnergyGrid) -> Plan:
    """What :func:`~xlatent.io.ingest.ingest_paths` makes of the chunks (meta None: none read).

    ``chunks`` may have their arrays dropped (only meta, band columns and provenance are
    used); ``skipped`` are discovery's misses, the chunks' skips follow them in file order.
    """
    skipped = [*skipped, *(s for c in chunks for s in c.skipped)]
    n_rows = [0 if c.rows is None else len(c.rows) for c in chunks]
    row_meta = [c.rows.meta for c in chunks if c.rows is not None]
    all_rows = pd.concat(row_meta, ignore_index=True) if row_meta else pd.DataFrame()
    keep_all = _not_background(all_rows, skipped)
    keep = np.split(keep_all, np.cumsum(n_rows)[:-1]) if chunks else []
    metas, bands = [], []
    if keep_all.any():
        metas.append(all_rows[keep_all])
        bands.append(pd.concat([c.rows_band for c in chunks if c.rows is not None])[keep_all])
    sets = [s for c in chunks for s in c.sets]
    metas += [s.meta for s in sets]
    bands += [b for c in chunks for b in c.set_bands]
    if not metas:
        return Plan(None, keep, [], False, skipped)
    meta = pd.concat(metas, ignore_index=True)
    meta["spec_id"] = unique_ids(meta)
    band = pd.concat(bands, ignore_index=True)
    for col in band.columns:  # as update_band_columns: in place if there, else appended
        meta[col] = band[col].to_numpy()
    provenance = [p for s in sets for p in s.provenance]
    provenance.append(
        {
            "step": "ingest",
            "n": len(meta),
            "skipped": len(skipped),
            "grid_bins": grid.n_bins,
            "area": AREA_DEFINITION,
        }
    )
    has_truth = not keep_all.any() and all(s.expected_counts is not None for s in sets)
    return Plan(meta, keep, provenance, has_truth, skipped)


def _not_background(meta: pd.DataFrame, skipped: list[tuple[str, str]]) -> np.ndarray:
    """Which PHA rows to keep: not a file that is only another row's BACKFILE.

    A file named by another spectrum's BACKFILE is a pure background when it names no
    background of its own (a CSC pha3 names itself, so it stays a source); such files are
    also taken off ``skipped`` (in place). Decided on every chunk's rows at once.
    """
    if not len(meta):
        return np.zeros(0, dtype=bool)
    src = real_paths(meta["source_file"])
    named = [p for p in meta["bkg_file"] if p]
    resolved = iter(real_paths(named))
    bkg = [next(resolved) if p else "" for p in meta["bkg_file"]]
    targets = {b for s, b in zip(src, bkg, strict=True) if b and b != s}
    if not targets:
        return np.ones(len(meta), dtype=bool)
    skipped[:] = [(p, why) for p, why in skipped if real_path(p) not in targets]
    return np.array([not (s in targets and not b) for s, b in zip(src, bkg, strict=True)])


__all__ = ["CHUNK_FILES", "Chunk", "Plan", "band_frame", "chunked", "plan", "read_chunk"]
