"""A SpectrumSet file read lazily: :class:`SpectrumSetView` (``SpectrumSet.open(path)``).

The grid, exposures and provenance are read (and checked) when the view opens, and the
``spec_id`` column is checked; the (n, m) arrays and the meta table stay on disk and are read,
checked and returned as in-memory float64 SpectrumSets a block at a time, so a set bigger than
memory can be streamed, and each process of a parallel run holds only the rows it reads
(``view.meta``, the whole table, is read on first use; :meth:`SpectrumSetView.meta_columns`
reads some columns or rows). The whole-set
read (``SpectrumSet.read_hdf5``) is :func:`read`: a view, its memory bound, then every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from xlatent.core import hdf5_layout as layout_mod
from xlatent.core import hdf5_meta, seal
from xlatent.core.bands import band_sums
from xlatent.core.errors import InputError, XlatentError

#: A SpectrumSet (not imported: spectrumset imports this module).
SpectrumSet = Any


class SpectrumSetView:
    """A read-only, lazy view of a SpectrumSet file; open it with ``SpectrumSet.open(path)``.

    ``len(view)``, ``view.grid``, ``view.provenance``, ``view.has_truth``,
    ``view.exposure_s``; ``view.meta`` (the whole table, read on first use and kept),
    ``view.meta_names`` and ``view.meta_columns(cols, rows)`` (read from the file, nothing
    kept); ``view[a:b]`` and ``view[indices]`` (any order,
    read sorted and returned in the order asked) give in-memory SpectrumSets;
    :meth:`iter_batches` streams the set in blocks; :meth:`load` reads all of it. The seal is
    checked when the view opens (a streaming SHA-256, unless ``check_seal=False``); the
    rows are checked as they are read, so damaged content in a later block raises an
    :class:`InputError` naming the file when that block is read. Use it as a context manager
    or :meth:`close` it. A view pickles as its path (it reopens, and rechecks, on the other
    side), so it can be handed to worker processes.
    """

    def __init__(
        self,
        path: str | Path,
        factory: Callable[..., SpectrumSet],
        check_seal: bool = True,
        *,
        whole: bool = False,
    ) -> None:
        self.path = Path(path)
        self._factory = factory
        self._check_seal = check_seal
        self._f: h5py.File | None = None
        self._meta: pd.DataFrame | None = None
        path = self.path
        if not path.exists():
            raise InputError(path, "no such file")
        if not path.is_file():
            raise InputError(path, "not a file")
        if check_seal:  # before libhdf5 parses anything (it can hang on damaged bytes)
            seal.check_seal(path)
        try:
            self._f = h5py.File(path, "r")
        except Exception as exc:  # noqa: BLE001 - h5py raises OSError and others on bad bytes
            reason = f"not an HDF5 file, or a truncated one ({layout_mod._brief(exc)})"
            raise InputError(path, reason) from None
        try:
            with self._guard():
                self._layout = layout_mod.check_layout(path, self._f)
                # A claim of more rows than memory holds is refused (a damaged file?), though
                # only the exposures stay in memory; the whole read (read_hdf5) needs it all.
                self._layout.check_memory(rows=whole)
                small = layout_mod.read_small(self._layout, self._f)
                hdf5_meta.check_spec_ids(self._layout)
        except BaseException:
            self.close()
            raise
        self.grid = small["grid"]
        self.exposure_s: np.ndarray = small["exposure_s"]
        self.provenance: list[dict[str, Any]] = small["provenance"]

    def _guard(self) -> Any:
        return _Guard(self.path)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self._layout.n

    @property
    def has_truth(self) -> bool:
        """Whether the file holds simulator truth (``expected_counts``)."""
        return "expected_counts" in self._layout.arrays

    @property
    def meta_names(self) -> list[str]:
        """The meta columns, in the file's order (nothing read)."""
        return list(self._layout.columns)

    @property
    def meta(self) -> pd.DataFrame:
        """The whole meta table, read on first use and then kept (a parallel worker should
        read its rows with :meth:`meta_columns` or ``view[a:b]`` instead)."""
        if self._meta is None:
            self._meta = self._read_meta(None, None)
        return self._meta

    def meta_columns(
        self,
        cols: Sequence[str] | None = None,
        rows: slice | np.ndarray | Sequence[int] | None = None,
    ) -> pd.DataFrame:
        """Columns ``cols`` (default all) of rows ``rows`` (default all; a slice, or indices
        in any order) of the meta table, read from the file (or from :attr:`meta` once read);
        index 0, 1, ..."""
        n = len(self)
        if rows is None:
            return self._read_meta(cols, None)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if step == 1:
                return self._read_meta(cols, slice(start, max(start, stop)))
            rows = np.arange(start, stop, step)
        sel = np.asarray(rows, dtype=np.intp).reshape(-1)
        if sel.size and (sel.min() < -n or sel.max() >= n):
            raise IndexError(f"index out of range for {n} spectra")
        sel = np.where(sel < 0, sel + n, sel)
        uniq, order = np.unique(sel, return_inverse=True)
        df = self._read_meta(cols, uniq)
        return df if np.array_equal(uniq, sel) else df.iloc[order].reset_index(drop=True)

    def _read_meta(
        self, cols: Sequence[str] | None, rows: slice | np.ndarray | None
    ) -> pd.DataFrame:
        hdf5_meta.check_columns(self._layout, cols)  # also for the kept table
        if self._meta is not None:
            df = self._meta if cols is None else self._meta[list(cols)]
            return df.copy() if rows is None else df.iloc[rows].reset_index(drop=True)
        if self._f is None:
            raise ValueError(f"{self.path}: the view is closed")
        with self._guard():
            return hdf5_meta.read_meta(self._layout, cols, rows)

    def check_meta(self) -> None:
        """Read every meta row, block by block (nothing kept): a damaged text column is
        refused now, as it was when a view read the whole table on opening."""
        if self._f is None:
            raise ValueError(f"{self.path}: the view is closed")
        with self._guard():
            hdf5_meta.check_all(self._layout)

    def __repr__(self) -> str:
        return f"<SpectrumSetView of {self.path}: {len(self)} spectra on {self.grid!r}>"

    def __getitem__(self, idx: int | slice | np.ndarray | Sequence[int]) -> SpectrumSet:
        """Rows as an in-memory SpectrumSet (always a set, also for a single integer)."""
        n = len(self)
        if isinstance(idx, slice):
            start, stop, step = idx.indices(n)
            if step == 1:
                return self._read(slice(start, max(start, stop)))
            idx = np.arange(start, stop, step)
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        sel = np.asarray(idx)
        if sel.dtype == bool:
            if sel.shape != (n,):
                raise IndexError(f"boolean index of shape {sel.shape} for {n} spectra")
            return self._read(np.flatnonzero(sel))
        if sel.size == 0:
            sel = sel.astype(np.intp)
        if sel.ndim != 1 or sel.dtype.kind not in "iu":
            raise IndexError(f"index must be a slice, an integer or 1-d integers, not {idx!r}")
        if sel.size and (sel.min() < -n or sel.max() >= n):
            raise IndexError(f"index out of range for {n} spectra")
        sel = np.where(sel < 0, sel + n, sel)
        rows, order = np.unique(sel, return_inverse=True)
        if rows.size != sel.size:
            raise ValueError("the index repeats a spectrum; spec_id must stay unique")
        block = self._read(rows)
        return block if np.array_equal(rows, sel) else block[order]

    def _read(self, rows: slice | np.ndarray) -> SpectrumSet:
        if self._f is None:
            raise ValueError(f"{self.path}: the view is closed")
        with self._guard():
            arrays = layout_mod.read_rows(self._layout, rows)
            return self._factory(
                grid=self.grid,
                counts=arrays["counts"],
                background=arrays["background"],
                exposure_s=self.exposure_s[rows],
                effective_area_cm2=arrays["effective_area_cm2"],
                meta=self._read_meta(None, rows),
                expected_counts=arrays.get("expected_counts"),
                provenance=list(self.provenance),
            )

    def iter_batches(
        self, batch_size: int = 8192, rows: np.ndarray | Sequence[int] | None = None
    ) -> Iterator[SpectrumSet]:
        """In-memory SpectrumSets of at most ``batch_size`` rows, in order: the whole set in
        contiguous blocks, or ``rows`` (indices, in the order given) ``batch_size`` at a time."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if rows is None:
            for a in range(0, len(self), batch_size):
                yield self[a : a + batch_size]
            return
        rows = np.asarray(rows)
        for a in range(0, rows.size, batch_size):
            yield self[rows[a : a + batch_size]]

    def summary(self, batch_size: int = 8192) -> str:
        """``SpectrumSet.summary()`` of the whole set, read a batch at a time."""
        net_b = [band_sums(b.net_counts, self.grid)["b"] for b in self.iter_batches(batch_size)]
        net = np.concatenate(net_b) if net_b else np.zeros(0)
        text = repr(self).replace(f"View of {self.path}:", ":")
        cols = [c for c in ("source_class",) if c in self.meta_names]
        meta = self.meta_columns(cols)
        return summary_text(text, self.exposure_s, net, meta, self.has_truth)

    def load(self) -> SpectrumSet:
        """The whole set in memory (what ``SpectrumSet.read_hdf5`` gives)."""
        self._layout.check_memory(rows=True)
        return self[0 : len(self)]

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the file (further reads raise ``ValueError``)."""
        if self._f is not None:
            f, self._f = self._f, None
            f.close()

    def __enter__(self) -> SpectrumSetView:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "factory": self._factory, "check_seal": self._check_seal}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["factory"], state["check_seal"])  # type: ignore[misc]


class _Guard:
    """Any error but an XlatentError while reading becomes one InputError naming the file
    (damaged bytes surface as any exception type)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None or issubclass(exc_type, (XlatentError, KeyboardInterrupt)):
            return False
        if not issubclass(exc_type, Exception):
            return False
        raise InputError(
            self.path, f"damaged SpectrumSet file ({layout_mod._brief(exc)})"
        ) from None


def summary_text(
    title: str, exposure_s: np.ndarray, net_b: np.ndarray, meta: pd.DataFrame, has_truth: bool
) -> str:
    """The lines of ``SpectrumSet.summary``: size, exposure, broad-band counts, classes."""
    lines = [
        title,
        f"  exposure: {np.median(exposure_s):.4g} s median",
        f"  broad-band (0.5-7 keV) net counts: median {np.median(net_b):.4g}, "
        f"range {net_b.min():.4g}-{net_b.max():.4g}"
        if len(net_b)
        else "  (empty)",
    ]
    classes = meta.get("source_class", pd.Series(dtype=object)).replace("", np.nan).dropna()
    if len(classes):
        counts = classes.value_counts()
        lines.append("  classes: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if has_truth:
        lines.append("  simulator truth present (expected_counts, truth_* columns)")
    return "\n".join(lines)


def meta_names_of(src: Any) -> list[str]:
    """The meta columns of a row source (a view, a SpectrumSet, anything with ``meta``)."""
    names = getattr(src, "meta_names", None)
    return list(names) if names is not None else list(src.meta.columns)


def meta_of(src: Any, cols: Sequence[str] | None = None, rows: Any = None) -> pd.DataFrame:
    """Columns ``cols`` (default all) of rows ``rows`` (default all) of a row source's meta,
    index 0, 1, ...: read from the file for a view (:meth:`SpectrumSetView.meta_columns`, or
    any source with that method), taken from ``src.meta`` otherwise."""
    read = getattr(src, "meta_columns", None)
    if read is not None:
        return read(cols, rows)
    meta = src.meta if cols is None else src.meta[list(cols)]
    return (meta if rows is None else meta.iloc[rows]).reset_index(drop=True)


def read(path: str | Path, factory: Callable[..., Any], check_seal: bool = True) -> Any:
    """Read the whole file ``path`` (see :meth:`SpectrumSet.read_hdf5`)."""
    with SpectrumSetView(path, factory, check_seal, whole=True) as view:
        return view.load()


__all__ = ["SpectrumSetView", "meta_names_of", "meta_of", "read", "summary_text"]
