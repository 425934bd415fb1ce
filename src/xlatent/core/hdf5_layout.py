"""The SpectrumSet file layout (HDF5): writing it, and reading it back checked and bounded.

:class:`~xlatent.core.spectrumset.SpectrumSet` delegates :meth:`write` and :meth:`read_hdf5`
here. A file holds ``energy_edges_kev``, ``counts``, ``background``, ``effective_area_cm2``
(and ``expected_counts`` for simulated sets) as (n, m) datasets with Fletcher-32 checksums,
``exposure_s``, a ``meta`` group with one dataset per column, and the attributes ``format``,
``schema_version``, ``xlatent_version`` and ``provenance`` (JSON). Readers in other formats
register with :func:`register_format_reader` so ``SpectrumSet.read`` reaches them.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from xlatent.core import seal
from xlatent.core.atomic import atomic_path, deferred_interrupt
from xlatent.core.errors import InputError, SchemaError, XlatentError
from xlatent.core.grid import EnergyGrid

SCHEMA_VERSION = 1  # bumped on any incompatible change of the layout
FORMAT_NAME = "xlatent.SpectrumSet"
#: The (n, m) arrays every set has.
ARRAYS = ("counts", "background", "effective_area_cm2")
_WRITE_BLOCK_ROWS = 1024  # rows per HDF5 chunk (and between Ctrl-C checkpoints)
#: HDF5 file-format versions written (readable by HDF5 >= 1.10): superblock and object
#: headers carry checksums, so damaged metadata is detected instead of parsed (libhdf5 can
#: loop forever on a corrupted version-1 object header).
_LIBVER = ("v110", "v110")
#: Most grid edges a file may claim.
_MAX_EDGES = 1_000_000
#: Bytes :meth:`SpectrumSet.read` may allocate; ``None``: the memory available now.
MAX_READ_BYTES: int | None = None


def write(s: Any, path: str | Path) -> Path:
    """Write the set ``s`` to ``path`` (see :meth:`SpectrumSet.write`)."""
    from xlatent._version import __version__

    problem = _values_problem(_arrays(s)) or _spec_id_problem(s.meta["spec_id"])
    if problem is not None:
        raise ValueError(f"refusing to write a SpectrumSet whose {problem}")
    path = Path(path)
    with deferred_interrupt() as check, atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=_LIBVER, userblock_size=seal.USERBLOCK_BYTES) as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["xlatent_version"] = __version__
            f.attrs["provenance"] = json.dumps(s.provenance, default=str)
            f.create_dataset("energy_edges_kev", data=s.grid.edges_kev, fletcher32=True)
            # Fletcher-32 checksums: a flipped byte in the data fails the read.
            opts = {
                "compression": "gzip",
                "compression_opts": 4,
                "shuffle": True,
                "fletcher32": True,
            }
            rows = min(max(len(s), 1), _WRITE_BLOCK_ROWS)
            names = [*ARRAYS, *(["expected_counts"] if s.has_truth else [])]
            for name in names:
                data = getattr(s, name)
                layout = {"chunks": (rows, data.shape[1]), **opts} if len(s) else {}
                ds = f.create_dataset(name, shape=data.shape, dtype=data.dtype, **layout)
                for a in range(0, len(s), rows):
                    check()
                    ds[a : a + rows] = data[a : a + rows]
            check()
            f.create_dataset("exposure_s", data=s.exposure_s, fletcher32=len(s) > 0)
            g = f.create_group("meta")
            g.attrs["columns"] = json.dumps(list(s.meta.columns))
            for col in s.meta.columns:
                check()
                _write_column(g, col, s.meta[col])
        check()
        seal.seal(tmp)
    return path


def _arrays(s: Any) -> dict[str, np.ndarray]:
    out = {name: getattr(s, name) for name in (*ARRAYS, "exposure_s")}
    if s.expected_counts is not None:
        out["expected_counts"] = s.expected_counts
    return out


def read(path: str | Path, factory: Callable[..., Any], check_seal: bool = True) -> Any:
    """Read ``path`` (see :meth:`SpectrumSet.read_hdf5`); ``factory(**parts)`` builds the set."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "not a file")
    if check_seal:  # before libhdf5 parses anything (it can hang on damaged bytes)
        seal.check_seal(path)
    try:
        f = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError and others on bad bytes
        raise InputError(path, f"not an HDF5 file, or a truncated one ({_brief(exc)})") from None
    try:
        with f:
            parts = _read_parts(path, f)
        return factory(**parts)
    except XlatentError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged bytes surface as any error type
        raise InputError(path, f"damaged SpectrumSet file ({_brief(exc)})") from None


def _key(col: str) -> str:
    # HDF5 names cannot contain '/'; keep the real name in the 'columns' attribute.
    return col.replace("/", "\\u002f")


def _write_column(g: h5py.Group, col: str, series: pd.Series) -> None:
    values = series.to_numpy()
    if series.dtype.kind in "biuf":
        g.create_dataset(_key(col), data=values, fletcher32=len(values) > 0)
    else:
        strings = [
            "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values
        ]
        ds = g.create_dataset(
            _key(col), data=np.array(strings, dtype=object), dtype=h5py.string_dtype()
        )
        ds.attrs["kind"] = "str"


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


def _values_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """The first value a SpectrumSet may not hold, described, or None."""
    for name, a in arrays.items():
        strict = _VALUE_RULES[name]
        bad = ~np.isfinite(a) | ((a <= 0) if strict else (a < 0))
        if bad.any():
            where = np.unravel_index(int(np.argmax(bad)), a.shape)
            at = f"spectrum {where[0]}" + (f", bin {where[1]}" if len(where) > 1 else "")
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


def _read_parts(path: Path, f: h5py.File) -> dict[str, Any]:
    """Check and read every part of an open SpectrumSet file (SpectrumSet keyword args)."""

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

    # Every shape is known: refuse before reading what would not fit in memory.
    n_2d = sum(1 for k in arrays if k != "exposure_s")
    need = 8 * (n * m * n_2d + n * (1 + len(columns)) + m + 1)
    limit = read_memory_limit()
    if need > limit:
        raise InputError(
            path,
            f"claims {n} spectra x {m} bins (~{need / 1024**3:.3g} GiB in memory), more than "
            f"the {limit / 1024**3:.3g} GiB this process may use; a damaged or hand-edited file?",
        )

    edges = np.asarray(edges_ds[()], dtype=np.float64)
    if not (np.all(np.isfinite(edges)) and edges[0] > 0 and np.all(np.diff(edges) > 0)):
        raise InputError(path, "energy_edges_kev are not positive, finite and increasing")
    data = {name: np.asarray(ds[()], dtype=np.float64) for name, ds in arrays.items()}
    problem = _values_problem(data)
    if problem is not None:
        raise InputError(path, problem)

    meta = {}
    for col, (ds, is_text) in col_ds.items():
        if is_text:
            try:
                meta[col] = np.array(ds.asstr()[()], dtype=object)
            except UnicodeDecodeError:
                raise InputError(path, f"meta column {col!r} is not valid UTF-8 text") from None
        else:
            meta[col] = ds[()]
    meta_df = pd.DataFrame(meta, index=range(n)) if meta else pd.DataFrame(index=range(n))
    problem = _spec_id_problem(meta_df["spec_id"])
    if problem is not None:
        raise InputError(path, problem)

    return {
        "grid": EnergyGrid(edges),
        "counts": data["counts"],
        "background": data["background"],
        "exposure_s": data["exposure_s"],
        "effective_area_cm2": data["effective_area_cm2"],
        "meta": meta_df,
        "expected_counts": data.get("expected_counts"),
        "provenance": _read_provenance(path, f),
    }


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
