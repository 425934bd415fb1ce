"""Reading OGIP responses straight from their bytes: an RMF's rows all at once, an ARF's columns.

Why: a CSC archive has its own arf3 and rmf3 for every detection, and astropy turns each of an
RMF's ~1,000 rows' variable-length F_CHAN / N_CHAN / MATRIX arrays into Python objects one at
a time (~50 ms an RMF, most of an ingest's time) and verifies every header card (~5 ms an
ARF). Here the descriptors are read as one array and the heap is gathered with index
arithmetic (FITS standard 4.0, section 7.3.5); an ARF's three columns are fixed-width.

:func:`rmf_arrays` and :func:`arf_arrays` return None whenever the file is anything but plain
(an unsupported column format, odd or overlapping descriptors, scaled columns, a group or
channel that does not fit, ...): the caller then reads it with astropy, which also words every
error. So a file these read gives the same arrays as the astropy reader, and a damaged file
the same message.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sp

from xlatent.io.fastfits import _TFORM, FitsFormatError, TableHDU, iter_extensions

#: Descriptor dtypes of variable-length array columns: P (32-bit) and Q (64-bit).
_DESCRIPTOR = {"P": np.dtype(">i4"), "Q": np.dtype(">i8")}


def find_extension(hdus: Iterable[Any], names: tuple[str, ...]) -> Any | None:
    """The first of ``hdus`` (anything with a ``header``: astropy HDUs or :class:`TableHDU`)
    named one of ``names`` by its EXTNAME, or by its HDUCLAS2 outside EBOUNDS (OGIP)."""
    for hdu in hdus:
        extname = str(hdu.header.get("EXTNAME", "")).strip().upper()
        hduclas2 = str(hdu.header.get("HDUCLAS2", "")).strip().upper()
        if extname in names or (hduclas2 in names and "EBOUNDS" not in extname):
            return hdu
    return None


def variable_column(hdu: TableHDU, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(elements per row, first element's index per row, all elements) of a variable-length
    array column, its elements in row order as float64 or int64 (native byte order)."""
    index, offset, tform = hdu.field(name)
    if hdu.header.get(f"TSCAL{index + 1}") is not None or hdu.header.get(f"TZERO{index + 1}"):
        raise FitsFormatError(f"column {name} is scaled")
    head = tform.lstrip("0123456789")
    repeat = tform[: len(tform) - len(head)]
    if repeat and int(repeat) != 1:  # 0 would be no descriptor at all, 2+ several
        raise FitsFormatError(f"column {name} has {repeat} descriptors a row")
    if len(head) < 2 or head[0] not in _DESCRIPTOR or head[1] not in _TFORM or head[1] == "L":
        raise FitsFormatError(f"column {name} is not a numeric variable-length array")
    desc_type, elem = _DESCRIPTOR[head[0]], np.dtype(_TFORM[head[1]])
    row_bytes, n_rows = int(hdu.header["NAXIS1"]), int(hdu.header["NAXIS2"])
    desc = np.ndarray((n_rows, 2), dtype=desc_type, buffer=hdu.data, offset=offset,
                      strides=(row_bytes, desc_type.itemsize)).astype(np.int64)  # fmt: skip
    counts, byte_offsets = desc[:, 0], desc[:, 1]
    size = elem.itemsize
    if np.any(counts < 0) or np.any(byte_offsets < 0) or np.any(byte_offsets % size):
        raise FitsFormatError(f"column {name} has odd descriptors")
    if np.any(byte_offsets + counts * size > len(hdu.heap)):
        raise FitsFormatError(f"column {name} points past its heap")
    # Rows may legally share heap bytes, but then the gathered arrays could outgrow the file
    # many times over: such files are left to astropy.
    if int(counts.sum()) * size > len(hdu.heap):
        raise FitsFormatError(f"column {name}'s rows overlap in the heap")
    heap = np.frombuffer(hdu.heap, dtype=elem, count=len(hdu.heap) // size)
    starts = np.cumsum(counts) - counts
    flat = _gather(heap, byte_offsets // size, counts)
    kind = np.float64 if elem.kind == "f" else np.int64
    return counts, starts, flat.astype(kind)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    return np.repeat(starts - first, counts) + np.arange(total)


def _gather(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``values[_ranges(starts, counts)]``; a slice when the ranges follow each other, as
    they do in a heap written row after row (no index arrays at all then)."""
    if counts.size and np.array_equal(starts[1:], starts[:-1] + counts[:-1]):
        return values[starts[0] : starts[0] + int(counts.sum())]
    return values[_ranges(starts, counts)]


def _groups(hdu: TableHDU, name: str, n_grp: np.ndarray) -> np.ndarray:
    """The first ``n_grp[i]`` entries of column ``name`` for every row i, in row order
    (int64); the column may be fixed-width or a variable-length array."""
    tform = hdu.field(name)[2]
    if tform.lstrip("0123456789")[:1] in _DESCRIPTOR:
        counts, starts, flat = variable_column(hdu, name)
        if np.any(counts < n_grp):
            raise FitsFormatError(f"{name} has fewer entries than N_GRP")
        return _gather(flat, starts, n_grp).astype(np.int64)
    fixed = hdu.column(name)
    fixed = fixed.reshape(fixed.shape[0], -1)
    if np.any(n_grp > fixed.shape[1]):
        raise FitsFormatError(f"{name} has fewer entries than N_GRP")
    take = np.arange(fixed.shape[1])[None, :] < n_grp[:, None]
    values = np.asarray(fixed)[take]
    if not np.array_equal(values, np.round(values)):
        raise FitsFormatError(f"{name} is not integral")
    return values.astype(np.int64)


def _matrix_rows(hdu: TableHDU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values per row, first value's index per row, all values) of MATRIX."""
    tform = hdu.field("MATRIX")[2]
    if tform.lstrip("0123456789")[:1] in _DESCRIPTOR:
        return variable_column(hdu, "MATRIX")
    fixed = hdu.column("MATRIX").astype(np.float64)
    fixed = fixed.reshape(fixed.shape[0], -1)
    width = fixed.shape[1]
    n = fixed.shape[0]
    return np.full(n, width), np.arange(n) * width, fixed.ravel()


def first_channel(mat: TableHDU, ebo: TableHDU) -> int:
    """TLMIN of F_CHAN, else of EBOUNDS CHANNEL, else 1 (OGIP)."""
    for hdu, col in ((mat, "F_CHAN"), (ebo, "CHANNEL")):
        key = f"TLMIN{hdu.names.index(col) + 1}" if col in hdu.names else ""
        if key in hdu.header:
            value = hdu.header[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise FitsFormatError(f"{key} is {value!r}")  # astropy's reader words it
            return value
    return 1


def rmf_arrays(raw: bytes, matrix_names: tuple[str, ...]) -> dict[str, Any] | None:
    """ENERG_LO, ENERG_HI, E_MIN, E_MAX (float64), the CSR matrix and the first channel of
    the RMF in ``raw``; None when the file is not plain enough for this reader."""
    try:
        hdus = list(iter_extensions(raw))
        mat, ebo = find_extension(hdus, matrix_names), find_extension(hdus, ("EBOUNDS",))
        if mat is None or ebo is None:
            return None  # astropy's reader words what is missing
        e_min = np.asarray(ebo.column("E_MIN"), dtype=np.float64).reshape(-1)
        e_max = np.asarray(ebo.column("E_MAX"), dtype=np.float64).reshape(-1)
        first = first_channel(mat, ebo)
        matrix = _matrix(mat, e_min.size, first)
        return {
            "energ_lo": np.asarray(mat.column("ENERG_LO"), dtype=np.float64).reshape(-1),
            "energ_hi": np.asarray(mat.column("ENERG_HI"), dtype=np.float64).reshape(-1),
            "e_min": e_min, "e_max": e_max, "matrix": matrix, "first": first,
        }  # fmt: skip
    except (FitsFormatError, KeyError, ValueError, IndexError, TypeError):
        return None


def _matrix(mat: TableHDU, n_channels: int, first: int) -> sp.csr_matrix:
    n_grp_col = mat.column("N_GRP")
    if n_grp_col.ndim != 1 or not np.array_equal(n_grp_col, np.round(n_grp_col)):
        raise FitsFormatError("N_GRP is not one integer a row")
    n_grp = np.maximum(n_grp_col.astype(np.int64), 0)
    n_rows = n_grp.size
    f_chan = _groups(mat, "F_CHAN", n_grp)
    n_chan = _groups(mat, "N_CHAN", n_grp)
    if np.any(n_chan < 0):
        raise FitsFormatError("negative N_CHAN")
    row_of_group = np.repeat(np.arange(n_rows), n_grp)
    per_row = np.bincount(row_of_group, weights=n_chan, minlength=n_rows).astype(np.int64)
    counts, starts, values = _matrix_rows(mat)
    if counts.size != n_rows or np.any(per_row > np.minimum(counts, n_channels)):
        raise FitsFormatError("N_CHAN does not fit a row")
    # Element k of group g sits in channel f_chan[g] - first + (k - g's first element).
    group_first = np.cumsum(n_chan) - n_chan
    cols = np.arange(int(n_chan.sum())) + np.repeat(f_chan - first - group_first, n_chan)
    if cols.size == 0 or cols.min() < 0 or cols.max() >= n_channels:
        raise FitsFormatError("a channel outside the EBOUNDS")
    data = _gather(values, starts, per_row)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    out = sp.csr_matrix((data, cols, indptr), shape=(n_rows, n_channels))
    out.sum_duplicates()  # as scipy's COO -> CSR does: sorted, duplicates summed
    return out


def arf_arrays(raw: bytes) -> dict[str, np.ndarray] | None:
    """ENERG_LO, ENERG_HI and SPECRESP (float64) of the ARF in ``raw``; None when the file
    is not plain enough for this reader."""
    try:
        hdu = find_extension(iter_extensions(raw), ("SPECRESP",))
        if hdu is None:
            return None
        out = {name.lower(): hdu.column(name) for name in ("ENERG_LO", "ENERG_HI", "SPECRESP")}
        if any(v.ndim != 1 for v in out.values()):
            return None
        return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    except (FitsFormatError, KeyError, ValueError, IndexError, TypeError):
        return None
