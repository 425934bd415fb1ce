"""Reading a SpectrumSet file's meta table a few columns or a block of rows at a time (issue 17).

A lazy view (:mod:`xlatent.core.spectrumset_view`) keeps no meta in memory: each process of a
multi-process run (Dask workers, DDP ranks) reads only the rows and columns it uses, so the
memory of the meta table (~1 kB a simulated spectrum) no longer grows as N x processes. The
checks are the whole read's: ``spec_id`` (present, unique, not empty) when the view opens,
text columns' UTF-8 as they are read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xlatent.core.errors import InputError
from xlatent.core.hdf5_layout import Layout, _spec_id_problem

#: Rows read at once when gathering scattered meta rows (a window is read whole, then picked).
_GATHER_ROWS = 16384

#: Rows a block of :func:`check_all` reads (~16 MB of a simulated set's meta).
CHECK_ROWS = 16384
#: Rows: all (None), a step-1 slice, or sorted unique indices.
RowSel = slice | np.ndarray | None


def _column(layout: Layout, col: str, rows: RowSel) -> np.ndarray:
    ds, is_text = layout.columns[col]
    src = ds.asstr() if is_text else ds
    try:
        if rows is None:
            values = src[()]
        elif isinstance(rows, slice):
            values = src[rows]
        elif rows.size == 0:
            values = src[0:0]
        else:  # whole windows around the wanted rows: h5py's point selection is slow
            parts = []
            for w in np.unique(rows // _GATHER_ROWS) * _GATHER_ROWS:
                inside = rows[(rows >= w) & (rows < w + _GATHER_ROWS)]
                lo, hi = int(inside[0]), int(inside[-1]) + 1
                parts.append(np.asarray(src[lo:hi])[inside - lo])
            values = np.concatenate(parts)
    except UnicodeDecodeError:
        raise InputError(layout.path, f"meta column {col!r} is not valid UTF-8 text") from None
    return np.array(values, dtype=object) if is_text else np.asarray(values)


def check_columns(layout: Layout, cols: Sequence[str] | None) -> None:
    """KeyError naming the file for a column of ``cols`` the meta table does not have."""
    unknown = [c for c in cols or () if c not in layout.columns]
    if unknown:
        raise KeyError(f"{layout.path}: no meta column {unknown[0]!r}")


def read_meta(
    layout: Layout, cols: Sequence[str] | None = None, rows: RowSel = None
) -> pd.DataFrame:
    """Columns ``cols`` (default all, in the file's order) of rows ``rows`` (None: all; a
    step-1 slice; sorted unique indices) of the meta table, index 0, 1, ..."""
    names = list(layout.columns) if cols is None else list(cols)
    check_columns(layout, names)
    if rows is None:
        k = layout.n
    elif isinstance(rows, slice):
        k = len(range(*rows.indices(layout.n)))
    else:
        k = int(rows.size)
    meta = {col: _column(layout, col, rows) for col in names}
    return pd.DataFrame(meta, index=range(k)) if meta else pd.DataFrame(index=range(k))


def check_spec_ids(layout: Layout) -> None:
    """Refuse (:class:`InputError`) a file whose ``spec_id`` column is not valid UTF-8, or
    has an empty or repeated id: the whole read's checks and messages, made block by block
    on 64-bit hashes of the ids (8 bytes a spectrum) and then on the rows whose hashes repeat
    (holding all ids as Python strings cost ~0.7 kB a spectrum of resident memory)."""
    hashes = np.empty(layout.n, dtype=np.uint64)
    for a in range(0, layout.n, CHECK_ROWS):
        ids = read_meta(layout, ["spec_id"], slice(a, a + CHECK_ROWS))["spec_id"].astype(str)
        empty = (ids.str.strip() == "").to_numpy()
        if empty.any():
            raise InputError(layout.path, f"spec_id is empty in row {a + int(np.argmax(empty))}")
        hashes[a : a + len(ids)] = pd.util.hash_array(ids.to_numpy(dtype=object))
    values, counts = np.unique(hashes, return_counts=True)
    if counts.size and counts.max() > 1:
        again = np.flatnonzero(np.isin(hashes, values[counts > 1]))
        problem = _spec_id_problem(read_meta(layout, ["spec_id"], again)["spec_id"])
        if problem is not None:
            raise InputError(layout.path, problem)


def check_all(layout: Layout) -> None:
    """Read every meta column :data:`CHECK_ROWS` rows at a time (nothing kept), so that a text
    column that is not UTF-8 is refused now rather than when its block is read."""
    block = CHECK_ROWS
    for a in range(0, layout.n, block):
        read_meta(layout, None, slice(a, min(a + block, layout.n)))


__all__ = ["check_all", "check_columns", "check_spec_ids", "read_meta"]
