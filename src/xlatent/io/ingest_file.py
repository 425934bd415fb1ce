"""Streaming an ingest to a file: chunk arrays spooled to disk, then written in final order.

The chunks of :mod:`xlatent.io.ingest_chunks` arrive in file order, but which rows survive,
their ``spec_id`` s, and the columns a caller adds over the whole table (the catalogue join,
the train/test split) are known only once every chunk is in. So the arrays of a chunk whose
rows are certainly kept go into the ``SpectrumSetWriter`` as the chunk arrives (the driver
compresses while the workers read), other chunks' arrays go to a spool folder next to the
output (only the metadata stays in memory), and a second pass appends them in the final
order, then the whole meta: memory stays flat at about one chunk, and the file is the one an
in-memory ingest would write.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import xlatent.core as core
from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.io.ingest_chunks import Chunk

_NAMES = ("counts", "background", "exposure_s", "effective_area_cm2", "expected_counts")


def shell(s: SpectrumSet, meta: Any = None) -> SpectrumSet:
    """``s`` without its arrays (zero placeholders that take no memory): meta, grid,
    provenance, whether it has truth, and its length stay."""
    n, m = len(s), s.grid.n_bins
    zeros = np.broadcast_to(np.float64(0.0), (n, m))
    return SpectrumSet(
        grid=s.grid, counts=zeros, background=zeros,
        exposure_s=np.broadcast_to(np.float64(1.0), (n,)), effective_area_cm2=zeros,
        meta=s.meta if meta is None else meta,
        expected_counts=None if s.expected_counts is None else zeros,
        provenance=list(s.provenance),
    )  # fmt: skip


class Spool:
    """A temporary folder of chunk arrays (``.npy``) beside ``out``; removed on exit."""

    def __init__(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.spool-", dir=out.parent))

    def keep(self, i: int, chunk: Chunk, rows: bool = True) -> Chunk:
        """Write chunk ``i``'s arrays to the spool (its PHA rows' only if ``rows``: False
        when they are in the output already); the chunk with shells in their place."""
        if chunk.rows is not None:
            if rows:
                self._save(i, "r", chunk.rows)
            chunk.rows = shell(chunk.rows)
        for j, s in enumerate(chunk.sets):
            self._save(i, str(j), s)
        chunk.sets = [shell(s) for s in chunk.sets]
        return chunk

    def _save(self, i: int, j: str, s: SpectrumSet) -> None:
        for name in _NAMES:
            a = getattr(s, name)
            if a is not None:
                np.save(self.dir / f"{i}_{j}_{name}.npy", a)

    def load(self, i: int, j: int | None, keep: np.ndarray) -> list[np.ndarray | None]:
        """The arrays of chunk ``i``'s PHA rows (``j`` None, rows ``keep``) or ``j``-th set."""
        out: list[np.ndarray | None] = []
        for name in _NAMES:
            path = self.dir / f"{i}_{'r' if j is None else j}_{name}.npy"
            a = np.load(path) if path.exists() else None
            out.append(a[keep] if a is not None and j is None else a)
        return out

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def spool(out: Path) -> Iterator[Spool]:
    sp = Spool(out)
    try:
        yield sp
    finally:
        sp.close()


@contextmanager
def open_writer(path: Path, grid: EnergyGrid, provenance: list[dict[str, Any]]) -> Iterator[Any]:
    """A :class:`SpectrumSetWriter` for ``path`` (atomic: nothing is left on error)."""
    with core.SpectrumSetWriter(path, grid, provenance=provenance) as w:
        yield w


__all__ = ["Spool", "open_writer", "shell", "spool"]
