"""The SpectrumSet file layout (HDF5) and its reading checks, shared by the whole-set read
and the lazy view (:mod:`xlatent.core.spectrumset_view`); the writer is
:mod:`xlatent.core.hdf5_write`.

A file holds ``energy_edges_kev``, ``counts``, ``background``, ``effective_area_cm2`` (and
``expected_counts`` for simulated sets) as (n, m) datasets chunked by rows, with Fletcher-32
checksums, ``exposure_s``, a ``meta`` group with one dataset per column, and the attributes
``format``, ``schema_version``, ``xlatent_version`` and ``provenance`` (JSON). The (n, m)
datasets may be float32 or float64 (any numeric dtype reads); readers return float64.
Readers in other formats register with :func:`register_format_reader` so
``SpectrumSet.read`` reaches them.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from xlatent.core import seal
from xlatent.core.errors import InputError, SchemaError
from xlatent.core.grid import EnergyGrid

SCHEMA_VERSION = 1  # bumped on any incompatible change of the layout
FORMAT_NAME = "xlatent.SpectrumSet"
#: The (n, m) arrays every set has.
ARRAYS = ("counts", "background", "effective_area_cm2")
#: Most grid edges a file may claim.
_MAX_EDGES = 1_000_000
#: Bytes :meth:`SpectrumSet.read` may allocate; ``None``: the memory available now.
MAX_READ_BYTES: int | None = None


def _key(col: str) -> str:
    # HDF5 names cannot contain '/'; keep the real name in the 'columns' attribute.
    return col.replace("/", "\\u002f")


# ------------------------------------------------------------------------ reading checks
def read_memory_limit() -> int:
    """Bytes a read may allocate: :data:`MAX_READ_BYTES`, else the memory available now."""
    if MAX_READ_BYTES is not None:
        return int(MAX_READ_BYTES)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return 64 * 1024**3


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _attr_text(value: Any) -> str | None:
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return str(value) if isinstance(value, str) else None


#: name -> (must be > 0 rather than >= 0)
_VALUE_RULES = {
    "counts": False,
    "background": False,
    "effective_area_cm2": False,
    "expected_counts": False,
    "exposure_s": True,
}


def _values_problem(arrays: dict[str, np.ndarray], rows: Any = None) -> str | None:
    """The first value a SpectrumSet may not hold, described, or None. ``rows``: the file's
    row number of each row (a block's ``range``, or the indices read); default 0, 1, ..."""
    for name, a in arrays.items():
        strict = _VALUE_RULES[name]
        bad = ~np.isfinite(a) | ((a <= 0) if strict else (a < 0))
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), a.shape)
            row = int(where[0] if rows is None else rows[where[0]])
            at = f"spectrum {row}" + (f", bin {where[1]}" if len(where) > 1 else "")
            need = "positive" if strict else "non-negative"
            return (
                f"'{name}' has {int(bad.sum())} values that are not finite and {need} "
                f"(first {a[where]!r} at {at})"
            )
    return None


def _spec_id_problem(ids: pd.Series) -> str | None:
    ids = ids.astype(str)
    empty = ids.str.strip() == ""
    if empty.any():
        return f"spec_id is empty in row {int(np.argmax(empty.to_numpy()))}"
    dup = ids.duplicated()
    if dup.any():
        return f"spec_id {ids[dup].iloc[0]!r} appears more than once"
    return None


@dataclass
class Layout:
    """The checked structure of an open SpectrumSet file: shapes agree, dtypes are numbers."""

    path: Path
    n: int
    m: int
    edges: h5py.Dataset
    #: The (n, m) datasets (``expected_counts`` when present) and ``exposure_s``.
    arrays: dict[str, h5py.Dataset]
    #: meta column name -> (dataset, is text), in the file's column order.
    columns: dict[str, tuple[h5py.Dataset, bool]]

    def need_bytes(self, rows: bool = True) -> int:
        """Bytes reading the whole set (``rows=False``: its meta, grid and exposure) takes."""
        n_2d = sum(1 for k in self.arrays if k != "exposure_s") if rows else 0
        return 8 * (self.n * self.m * n_2d + self.n * (1 + len(self.columns)) + self.m + 1)

    def check_memory(self, rows: bool = True) -> None:
        """Refuse (:class:`InputError`) before reading what would not fit in memory."""
        need, limit = self.need_bytes(rows), read_memory_limit()
        if need > limit:
            hint = "read it in blocks with SpectrumSet.open(path)" if rows else "damaged?"
            raise InputError(
                self.path,
                f"claims {self.n} spectra x {self.m} bins (~{need / 1024**3:.3g} GiB in memory), "
                f"more than the {limit / 1024**3:.3g} GiB this process may use (a damaged or "
                f"hand-edited file? a set bigger than memory: {hint})",
            )


def check_layout(path: Path, f: h5py.File) -> Layout:
    """Check the attributes, datasets, shapes and dtypes of an open file (reads no rows)."""

    def schema(reason: str) -> SchemaError:
        return SchemaError(f"{path}: {reason}")

    fmt = _attr_text(f.attrs.get("format"))
    if fmt != FORMAT_NAME:
        what = "no 'format' attribute" if "format" not in f.attrs else f"format {fmt!r}"
        raise NotASpectrumSet(path, f"not an xlatent SpectrumSet file ({what})")
    if "schema_version" not in f.attrs:
        raise schema("no 'schema_version' attribute")
    version = f.attrs["schema_version"]
    if isinstance(version, np.ndarray) and version.size == 1:
        version = version.reshape(-1)[0]
    if not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_)):
        raise schema(f"schema_version {version!r} is not an integer")
    if int(version) != SCHEMA_VERSION:
        raise schema(
            f"SpectrumSet schema version {int(version)}, this xlatent reads "
            f"version {SCHEMA_VERSION}"
        )

    def dataset(name: str, group: h5py.Group = f, label: str | None = None) -> h5py.Dataset:
        label = label or f"dataset '{name}'"
        obj = group.get(name)
        if obj is None:
            raise schema(f"{label} is missing")
        if not isinstance(obj, h5py.Dataset):
            raise schema(f"{label} is not a dataset")
        return obj

    def numeric(ds: h5py.Dataset, label: str, kinds: str = "iuf") -> None:
        if ds.dtype.kind not in kinds:
            raise schema(f"{label} has dtype {ds.dtype}, expected numbers")

    edges_ds = dataset("energy_edges_kev")
    numeric(edges_ds, "dataset 'energy_edges_kev'")
    if edges_ds.ndim != 1 or not 2 <= edges_ds.shape[0] <= _MAX_EDGES:
        raise schema(f"dataset 'energy_edges_kev' has shape {edges_ds.shape}, expected (m + 1,)")
    m = edges_ds.shape[0] - 1
    counts_ds = dataset("counts")
    numeric(counts_ds, "dataset 'counts'")
    if counts_ds.ndim != 2 or counts_ds.shape[1] != m:
        raise schema(
            f"dataset 'counts' has shape {counts_ds.shape}, expected (n, {m}) for the grid"
        )
    n = counts_ds.shape[0]
    arrays = {"counts": counts_ds}
    names = ["background", "effective_area_cm2", "exposure_s"]
    if "expected_counts" in f:
        names.append("expected_counts")
    for name in names:
        ds = dataset(name)
        numeric(ds, f"dataset '{name}'")
        want = (n,) if name == "exposure_s" else (n, m)
        if ds.shape != want:
            raise schema(f"dataset '{name}' has shape {ds.shape}, expected {want} like 'counts'")
        arrays[name] = ds

    g = f.get("meta")
    if not isinstance(g, h5py.Group):
        raise schema("group 'meta' is missing" if g is None else "'meta' is not a group")
    if "columns" not in g.attrs:
        raise schema("meta has no 'columns' attribute")
    text = _attr_text(g.attrs["columns"])
    try:
        columns = json.loads(text) if text is not None else None
    except ValueError:
        columns = None
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError(path, "meta 'columns' attribute is not a JSON list of names")
    if len(set(columns)) != len(columns):
        raise InputError(path, "meta 'columns' lists a column more than once")
    if "spec_id" not in columns:
        raise schema("meta has no 'spec_id' column")
    col_ds = {}
    for col in columns:
        label = f"meta column {col!r}"
        ds = dataset(_key(col), g, label)
        if ds.shape != (n,):
            raise schema(f"{label} has shape {ds.shape}, expected ({n},)")
        is_text = h5py.check_string_dtype(ds.dtype) is not None
        if ds.attrs.get("kind") == "str" and not is_text:
            raise schema(f"{label} is marked as text but has dtype {ds.dtype}")
        if not is_text:
            numeric(ds, label, "biuf")
        col_ds[col] = (ds, is_text)
    return Layout(path, n, m, edges_ds, arrays, col_ds)


def read_small(layout: Layout, f: h5py.File) -> dict[str, Any]:
    """The parts of a set kept in memory by a view, checked: ``grid``, ``exposure_s`` and
    ``provenance`` (the meta is read by rows and columns: :mod:`xlatent.core.hdf5_meta`)."""
    path = layout.path
    edges = np.asarray(layout.edges[()], dtype=np.float64)
    if not (np.all(np.isfinite(edges)) and edges[0] > 0 and np.all(np.diff(edges) > 0)):
        raise InputError(path, "energy_edges_kev are not positive, finite and increasing")
    exposure = np.asarray(layout.arrays["exposure_s"][()], dtype=np.float64)
    problem = _values_problem({"exposure_s": exposure})
    if problem is not None:
        raise InputError(path, problem)
    return {
        "grid": EnergyGrid(edges),
        "exposure_s": exposure,
        "provenance": _read_provenance(path, f),
    }


#: Rows read at once when gathering scattered rows (bounds the memory of a fancy index).
_GATHER_ROWS = 8192


def read_rows(layout: Layout, rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    """The (n, m) arrays of ``rows`` (a step-1 slice, or sorted unique indices) as float64,
    checked like a whole read; rows in errors are numbered as in the file."""
    out = {}
    for name, ds in layout.arrays.items():
        if name == "exposure_s":
            continue
        if isinstance(rows, slice):
            out[name] = np.asarray(ds[rows], dtype=np.float64)
            continue
        a = np.empty((rows.size, layout.m))
        # Whole windows of rows around the wanted ones: h5py's point selection is slow.
        starts = np.unique(rows // _GATHER_ROWS) * _GATHER_ROWS
        for w in starts:
            inside = (rows >= w) & (rows < w + _GATHER_ROWS)
            lo, hi = int(rows[inside][0]), int(rows[inside][-1]) + 1
            a[inside] = ds[lo:hi][rows[inside] - lo]
        out[name] = a
    numbers = range(rows.start or 0, layout.n) if isinstance(rows, slice) else rows
    problem = _values_problem(out, numbers)
    if problem is not None:
        raise InputError(layout.path, problem)
    return out


def _read_provenance(path: Path, f: h5py.File) -> list[dict[str, Any]]:
    """Provenance records; undecodable ones are replaced by one record saying so (warned)."""
    if "provenance" not in f.attrs:
        return []
    raw = f.attrs["provenance"]
    text = _attr_text(raw)
    reason = None
    if text is None:
        reason = f"not text ({type(raw).__name__})"
    else:
        try:
            prov = json.loads(text)
        except ValueError as exc:
            reason = f"not JSON ({_brief(exc)})"
        else:
            if isinstance(prov, list) and all(isinstance(p, dict) for p in prov):
                return prov
            reason = "not a JSON list of records"
    warnings.warn(
        f"{path}: provenance is unreadable ({reason}); replaced by one 'provenance-unreadable' "
        "record",
        UserWarning,
        stacklevel=3,
    )
    return [{"step": "provenance-unreadable", "reason": reason}]


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` starts with the HDF5 signature or a SpectrumSet seal."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(seal.MAGIC))
    except OSError:
        return True  # let read() name the problem
    return head.startswith(b"\x89HDF\r\n\x1a\n") or seal.is_sealed(head)


class NotASpectrumSet(InputError):
    """An HDF5 file without the SpectrumSet ``format`` attribute (perhaps another layout)."""


#: The input-format registry's ``read`` and ``identify_format``; set by
#: :mod:`xlatent.io.registry` when it loads.
_REGISTRY: dict[str, Any] = {}


def register_format_reader(reader: Any, identify: Any) -> None:
    """Called once by :mod:`xlatent.io.registry`: ``reader(path, format=, grid=)`` and
    ``identify(path) -> format name or 'unknown'``."""
    _REGISTRY.update(read=reader, identify=identify)


def format_registry() -> dict[str, Any]:
    # The registry lives in xlatent.io, which imports core: load it by name on first use (as
    # entry points are), so core has no import of io and the package graph stays acyclic.
    if not _REGISTRY:
        import importlib

        importlib.import_module("xlatent.io.registry")
    return _REGISTRY
