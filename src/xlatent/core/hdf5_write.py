"""Writing SpectrumSet files in blocks: :class:`SpectrumSetWriter` (``SpectrumSet.write`` is
one block).

Storage: each (n, m) array is a row-chunked HDF5 dataset (about 1 MB a chunk) with
Fletcher-32 checksums, grown block by block, so a writer's memory is one block whatever the
set's size. ``counts`` and ``background`` are stored as float32 when every value written is
exactly a float32 (integer counts below 2**24, for one), else as float64: lossless either way
(a block that is not exact turns its dataset into float64, copying what was written).
``effective_area_cm2`` and ``expected_counts`` are always float32: a relative rounding of
6e-8 at most, far below any calibration's uncertainty. ``exposure_s`` and meta keep their
dtypes. Readers return float64 whatever the file holds.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from xlatent.core import seal
from xlatent.core.atomic import deferred_interrupt, remove_stale_temps, temp_name
from xlatent.core.grid import EnergyGrid
from xlatent.core.hdf5_layout import (
    ARRAYS,
    FORMAT_NAME,
    SCHEMA_VERSION,
    _key,
    _spec_id_problem,
    _values_problem,
)

#: HDF5 file-format versions written (readable by HDF5 >= 1.10): superblock and object
#: headers carry checksums, so damaged metadata is detected instead of parsed (libhdf5 can
#: loop forever on a corrupted version-1 object header).
_LIBVER = ("v110", "v110")
#: Bytes of one chunk of an (n, m) dataset (rows = this / (m * itemsize)), and the rows
#: written between Ctrl-C checkpoints.
CHUNK_BYTES = 2**20
#: Rows per chunk of the 1-d datasets (exposure, meta columns).
_ROWS_1D = 16384
#: Filters of the (n, m) datasets: gzip level 4 after byte shuffling (any HDF5 tool reads
#: it, unlike h5py's lzf). benchmarks/storage.py, 20k simulated spectra: 3,330 B a spectrum
#: (lzf 3,590, none 4,550; float64 gzip before issue 17: 4,240), read as fast as lzf; no
#: compression reads ~1.7x faster but is 37% larger.
FILTERS: dict[str, Any] = {
    "compression": "gzip",
    "compression_opts": 4,
    "shuffle": True,
    "fletcher32": True,
}
#: Arrays stored as float32 only when that is exact; arrays always stored as float32.
_EXACT_F32 = ("counts", "background")
_ALWAYS_F32 = ("effective_area_cm2", "expected_counts")


def _exact_in_f32(a: np.ndarray) -> bool:
    return bool(np.array_equal(a.astype(np.float32).astype(np.float64), a))


class SpectrumSetWriter:
    """Write a SpectrumSet file block by block; atomic, like :meth:`SpectrumSet.write`.

    ``with SpectrumSetWriter(path, grid, provenance=[...]) as w: w.append(block)`` writes the
    blocks' rows in order into a temporary file beside ``path``; on leaving the block
    normally the file is sealed (:mod:`xlatent.core.seal`) and renamed onto ``path``. On an
    exception (``KeyboardInterrupt`` included) or :meth:`abort` the temporary file is removed
    and ``path`` is left as it was. The meta columns of the first block fix the file's
    columns; every block must have the same ones, and all or none of the blocks
    ``expected_counts``. A block's own provenance is ignored (``provenance`` is the file's).
    :meth:`append` refuses (``ValueError``) what a reader would refuse: values that are
    negative or not finite, exposure <= 0, empty ``spec_id``, and a ``spec_id`` seen before.

    Arrays and meta may also go separately, arrays first: :meth:`append_arrays` (a block's
    arrays, its meta ignored) as the rows come, then :meth:`append_meta` with the meta of
    those rows, in order (a streamed ingest learns the whole table only at the end), and
    :meth:`set_provenance`; closing refuses a file whose meta does not cover every row.
    """

    def __init__(
        self, path: str | Path, grid: EnergyGrid, provenance: list[dict[str, Any]] | None = None
    ) -> None:
        from xlatent._version import __version__

        self.path = Path(path)
        self.grid = grid
        self.n = 0  # rows of arrays written
        self._n_meta = 0  # rows of meta written (== n but while arrays run ahead)
        self._done = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        self._tmp = self.path.parent / temp_name(self.path)
        try:
            # Deferred: Ctrl-C inside h5py's callbacks would be printed and lost.
            with deferred_interrupt():
                # "x": create, never overwrite (the name is fresh and random).
                f = self._f = h5py.File(
                    self._tmp, "x", libver=_LIBVER, userblock_size=seal.USERBLOCK_BYTES
                )
                f.attrs["format"] = FORMAT_NAME
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["xlatent_version"] = __version__
                f.attrs["provenance"] = json.dumps(list(provenance or []), default=str)
                f.create_dataset("energy_edges_kev", data=grid.edges_kev, fletcher32=True)
        except BaseException:
            self.abort()
            raise
        self._ds: dict[str, h5py.Dataset] = {}
        self._columns: list[str] | None = None
        self._has_truth: bool | None = None
        # 64-bit hashes of the spec_ids written (not a Python string each): a set for the
        # per-block check (np.isin against every hash so far made writing quadratic in the
        # number of blocks), the arrays for finding the rows of a match.
        self._hash_set: set[int] = set()
        self._hash_parts: list[np.ndarray] = []

    # --------------------------------------------------------------------- blocks
    def append(self, block: Any) -> None:
        """Append the rows of ``block`` (a SpectrumSet on the writer's grid)."""
        # Deferred from the first check on: a Ctrl-C while values are checked could
        # otherwise land in an h5py callback and be lost.
        with deferred_interrupt():
            if self._n_meta != self.n:
                raise ValueError(f"meta of {self.n - self._n_meta} rows is still to come")
            self._append(block, with_meta=True)

    def append_arrays(self, block: Any) -> None:
        """Append the arrays of ``block``'s rows only (its meta is ignored): their meta
        follows, in the same order, through :meth:`append_meta`."""
        with deferred_interrupt():
            self._append(block, with_meta=False)

    def append_meta(self, meta: pd.DataFrame) -> None:
        """Append the meta of the next ``len(meta)`` rows whose arrays are written."""
        with deferred_interrupt():
            self._closed_check()
            if self._n_meta + len(meta) > self.n:
                raise ValueError(f"meta for {self._n_meta + len(meta)} rows, arrays for {self.n}")
            self._append_meta(meta)

    def set_provenance(self, provenance: list[dict[str, Any]]) -> None:
        """Replace the file's provenance (given when the writer was made)."""
        with deferred_interrupt():
            self._closed_check()
            self._f.attrs["provenance"] = json.dumps(list(provenance), default=str)

    def _closed_check(self) -> None:
        if self._done:
            raise ValueError(f"{self.path}: the writer is closed")

    def _append(self, block: Any, with_meta: bool) -> None:
        self._closed_check()
        if block.grid != self.grid:
            raise ValueError(f"block on {block.grid!r}, the writer's grid is {self.grid!r}")
        if self._has_truth is not None and block.has_truth != self._has_truth:
            raise ValueError("every block must have expected_counts, or none")
        arrays = {name: getattr(block, name) for name in (*ARRAYS, "exposure_s")}
        if block.has_truth:
            arrays["expected_counts"] = block.expected_counts
        k = len(block)
        problem = _values_problem(arrays, range(self.n, self.n + k))
        if problem is not None:
            raise ValueError(f"refusing to write a SpectrumSet whose {problem}")
        hashes = self._meta_checks(block.meta) if with_meta else None
        with deferred_interrupt() as check:
            if not self._ds:
                self._create_arrays(arrays)
            for name, data in arrays.items():
                self._append_array(name, data, check)
            self.n += k
        if hashes is not None:
            self._append_meta(block.meta, hashes)

    def _meta_checks(self, meta: pd.DataFrame) -> np.ndarray:
        """The hashes of ``meta``'s spec_ids; ValueError for a spec_id that is empty or seen
        before, or columns that are not the first block's."""
        problem = _spec_id_problem(meta["spec_id"])
        ids = meta["spec_id"].astype(str)
        hashes = pd.util.hash_pandas_object(ids, index=False).to_numpy(np.uint64)
        if problem is None and len(meta) and self._n_meta:
            problem = self._seen_problem(ids, hashes)
        if problem is not None:
            raise ValueError(f"refusing to write a SpectrumSet whose {problem}")
        columns = list(meta.columns)
        if self._columns is not None and set(columns) != set(self._columns):
            missing = sorted(set(self._columns) - set(columns))
            extra = sorted(set(columns) - set(self._columns))
            raise ValueError(
                f"block meta columns differ from the first block's (missing {missing}, "
                f"extra {extra})"
            )
        return hashes

    def _append_meta(self, meta: pd.DataFrame, hashes: np.ndarray | None = None) -> None:
        """Append meta rows (``hashes``: of their spec_ids, when already checked)."""
        if hashes is None:
            hashes = self._meta_checks(meta)
        with deferred_interrupt() as check:
            if self._columns is None:
                self._create_meta(meta)
            for col in self._columns or []:
                check()
                self._append_column(col, meta[col])
            self._hash_set.update(hashes.tolist())
            self._hash_parts.append(hashes)
            self._n_meta += len(meta)

    def _seen_problem(self, ids: pd.Series, hashes: np.ndarray) -> str | None:
        """A spec_id of this block already written, described, or None (hash matches are
        confirmed against the ids in the file)."""
        seen = self._hash_set
        hit = np.fromiter((h in seen for h in hashes.tolist()), dtype=bool, count=len(hashes))
        if not hit.any():
            return None
        rows = np.flatnonzero(np.isin(np.concatenate(self._hash_parts), hashes[hit]))
        written = set(self._f["meta"][_key("spec_id")].asstr()[rows])
        seen = ids[hit & ids.isin(written).to_numpy()]
        return f"spec_id {seen.iloc[0]!r} appears more than once" if len(seen) else None

    def _create_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        m = self.grid.n_bins
        for name, data in arrays.items():
            if name == "exposure_s":
                self._ds[name] = self._f.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=np.float64,
                    chunks=(_ROWS_1D,), fletcher32=True,
                )  # fmt: skip
                continue
            f32 = name in _ALWAYS_F32 or (name in _EXACT_F32 and _exact_in_f32(data))
            self._ds[name] = self._new_2d(name, np.float32 if f32 else np.float64, m)
        self._has_truth = "expected_counts" in arrays

    def _create_meta(self, meta: pd.DataFrame) -> None:
        g = self._f.create_group("meta")
        self._columns = list(meta.columns)
        g.attrs["columns"] = json.dumps(self._columns)
        for col in self._columns:
            series = meta[col]
            kw: dict[str, Any] = {"shape": (0,), "maxshape": (None,), "chunks": (_ROWS_1D,)}
            if series.dtype.kind in "biuf":
                g.create_dataset(_key(col), dtype=series.dtype, fletcher32=True, **kw)
            else:
                g.create_dataset(_key(col), dtype=h5py.string_dtype(), **kw).attrs["kind"] = "str"

    def _new_2d(self, name: str, dtype: Any, m: int) -> h5py.Dataset:
        rows = max(1, CHUNK_BYTES // (m * np.dtype(dtype).itemsize))
        return self._f.create_dataset(
            name, shape=(0, m), maxshape=(None, m), dtype=dtype, chunks=(rows, m), **FILTERS
        )

    def _append_array(self, name: str, data: np.ndarray, check: Any) -> None:
        ds = self._ds[name]
        if name in _EXACT_F32 and ds.dtype == np.float32 and not _exact_in_f32(data):
            ds = self._promote(name, check)
        a = self.n
        ds.resize(a + len(data), axis=0)
        step = ds.chunks[0]
        for i in range(0, len(data), step):
            check()
            ds[a + i : a + i + step] = data[i : i + step]

    def _promote(self, name: str, check: Any) -> h5py.Dataset:
        """Turn a float32 dataset into float64 (a block not exact in float32 arrived)."""
        old = self._ds[name]
        new = self._new_2d(f"{name}.float64", np.float64, old.shape[1])
        new.resize(old.shape[0], axis=0)
        step = new.chunks[0]
        for i in range(0, old.shape[0], step):
            check()
            new[i : i + step] = old[i : i + step].astype(np.float64)
        del self._f[name]
        self._f.move(f"{name}.float64", name)
        self._ds[name] = self._f[name]
        return self._ds[name]

    def _append_column(self, col: str, series: pd.Series) -> None:
        ds = self._f["meta"][_key(col)]
        values = series.to_numpy()
        if h5py.check_string_dtype(ds.dtype) is None:
            if series.dtype.kind not in "biuf" or not np.can_cast(
                series.dtype, ds.dtype, "same_kind"
            ):
                raise ValueError(f"meta column {col!r} is {series.dtype} here, {ds.dtype} before")
        else:
            values = np.array(
                ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                 for v in values],
                dtype=object,
            )  # fmt: skip
        a = ds.shape[0]
        ds.resize(a + len(values), axis=0)
        ds[a:] = values

    # ------------------------------------------------------------------ finishing
    def close(self) -> Path:
        """Finish: seal the file and rename it onto ``path`` (which is returned)."""
        if self._done:
            return self.path
        try:
            with deferred_interrupt() as check:
                if self._n_meta != self.n:
                    raise ValueError(f"{self.path}: meta for {self._n_meta} of {self.n} rows")
                if not self._ds:  # no block: an empty set
                    empty = np.zeros((0, self.grid.n_bins))
                    self._create_arrays({n: empty for n in ARRAYS} | {"exposure_s": np.zeros(0)})
                if self._columns is None:
                    self._create_meta(pd.DataFrame({"spec_id": np.array([], dtype=object)}))
                self._f.close()
                check()
                seal.seal(self._tmp)
                check()
                os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.path

    def abort(self) -> None:
        """Stop without writing: remove the temporary file; ``path`` is left as it was."""
        self._done = True
        with contextlib.suppress(Exception):
            self._f.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> SpectrumSetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # a writer dropped without close(): leave no temp file
        if not getattr(self, "_done", True):
            self.abort()


def write(s: Any, path: str | Path) -> Path:
    """Write the set ``s`` to ``path`` in one block (see :meth:`SpectrumSet.write`)."""
    # One deferred region over the whole write, the gaps between the writer's own deferred
    # steps (opening, appending, closing) included.
    with deferred_interrupt(), SpectrumSetWriter(path, s.grid, s.provenance) as w:
        w.append(s)
    return w.path


__all__ = ["CHUNK_BYTES", "FILTERS", "SpectrumSetWriter", "write"]
