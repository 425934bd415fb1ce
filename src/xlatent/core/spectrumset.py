"""SpectrumSet: spectra on one energy grid plus a metadata table and provenance.

Every stage of xlatent reads and writes this container (HDF5 on disk), so any stage can start
from a file: ingest and simulate write one, the model reads one, evaluation reads one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import xlatent.core.hdf5_layout as hdf5_layout
import xlatent.core.hdf5_write as hdf5_write
import xlatent.core.spectrumset_view as spectrumset_view
from xlatent.core.bands import band_sums, hardness_columns
from xlatent.core.grid import EnergyGrid
from xlatent.core.hdf5_layout import FORMAT_NAME, SCHEMA_VERSION
from xlatent.core.spectrumset_view import SpectrumSetView, summary_text

__all__ = ["FORMAT_NAME", "ID_COLUMNS", "SCHEMA_VERSION", "SpectrumSet"]

#: Identifier columns every set carries, with their fill values for unknowns.
ID_COLUMNS: dict[str, Any] = {
    "obsid": -1,
    "obi": -1,
    "region_id": -1,
    "name": "",
    "object": "",
    "source_file": "",
    "instrument": "",
    "source_class": "",
}


@dataclass(eq=False)
class SpectrumSet:
    """Spectra on one :class:`EnergyGrid` with per-spectrum metadata.

    Attributes
    ----------
    grid : EnergyGrid
    counts : (n, m) source-region counts per grid bin.
    background : (n, m) background counts scaled to the source region.
    exposure_s : (n,) source exposure in seconds.
    effective_area_cm2 : (n, m) effective area per grid bin (cm^2), the ARF folded through the
        RMF onto the channel-energy bins (:mod:`xlatent.instrument.folded_area`).
    meta : pandas.DataFrame with one row per spectrum (``spec_id`` unique).
    expected_counts : optional (n, m) noiseless expected source counts (simulator truth).
    provenance : list of processing-step records.
    """

    grid: EnergyGrid
    counts: np.ndarray
    background: np.ndarray
    exposure_s: np.ndarray
    effective_area_cm2: np.ndarray
    meta: pd.DataFrame
    expected_counts: np.ndarray | None = None
    provenance: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        m = self.grid.n_bins
        self.counts = _as_2d(self.counts, "counts", m)
        n = self.counts.shape[0]
        self.background = _as_2d(self.background, "background", m, n)
        self.effective_area_cm2 = _as_2d(self.effective_area_cm2, "effective_area_cm2", m, n)
        if self.expected_counts is not None:
            self.expected_counts = _as_2d(self.expected_counts, "expected_counts", m, n)
        self.exposure_s = np.asarray(self.exposure_s, dtype=np.float64).reshape(-1)
        if self.exposure_s.shape != (n,):
            raise ValueError(f"exposure_s has {self.exposure_s.size} values for {n} spectra")
        meta = pd.DataFrame(self.meta).reset_index(drop=True) if self.meta is not None else None
        if meta is None or (len(meta) == 0 and n > 0):
            meta = pd.DataFrame(index=range(n))
        if len(meta) != n:
            raise ValueError(f"meta has {len(meta)} rows for {n} spectra")
        for col, fill in ID_COLUMNS.items():
            if col not in meta:
                meta[col] = fill
        if "spec_id" not in meta:
            meta.insert(0, "spec_id", [f"spec{i:06d}" for i in range(n)])
        meta["spec_id"] = meta["spec_id"].astype(str)
        if meta["spec_id"].duplicated().any():
            dup = meta["spec_id"][meta["spec_id"].duplicated()].iloc[0]
            raise ValueError(f"spec_id must be unique; {dup!r} appears more than once")
        self.meta = meta

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.counts.shape[0]

    def __getitem__(self, idx: int | slice | np.ndarray | Sequence[int]) -> SpectrumSet:
        """A subset (always a SpectrumSet, also for a single integer)."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        sel = np.arange(len(self))[idx]
        return SpectrumSet(
            grid=self.grid,
            counts=self.counts[sel],
            background=self.background[sel],
            exposure_s=self.exposure_s[sel],
            effective_area_cm2=self.effective_area_cm2[sel],
            meta=self.meta.iloc[sel].reset_index(drop=True),
            expected_counts=None if self.expected_counts is None else self.expected_counts[sel],
            provenance=list(self.provenance),
        )

    def __repr__(self) -> str:
        return f"<SpectrumSet: {len(self)} spectra on {self.grid!r}>"

    @property
    def net_counts(self) -> np.ndarray:
        """Source minus scaled background counts per bin (may be negative)."""
        return self.counts - self.background

    @property
    def has_truth(self) -> bool:
        """Whether simulator truth (noiseless spectra) is present."""
        return self.expected_counts is not None

    def add_provenance(self, step: str, **info: Any) -> None:
        """Record a processing step (JSON-serialisable details)."""
        from xlatent._version import __version__

        self.provenance.append({"step": step, "xlatent_version": __version__, **info})

    # ------------------------------------------------------------- derived columns
    def update_band_columns(self) -> SpectrumSet:
        """(Re)compute ``net_counts_s/m/h/b`` and the count hardness ratios ``hr_counts_hm``,
        ``hr_counts_hs``, ``hr_counts_ms`` in ``meta`` (not the CSC's photon-flux ``hard_*``,
        which keep their names when a catalogue is joined); returns self."""
        net = band_sums(self.net_counts, self.grid)
        for code, values in net.items():
            self.meta[f"net_counts_{code}"] = values
        for name, values in hardness_columns(net).items():
            self.meta[name] = values
        return self

    @classmethod
    def concat(cls, sets: Sequence[SpectrumSet]) -> SpectrumSet:
        """Stack sets on the same grid; provenance is merged in order."""
        if not sets:
            raise ValueError("nothing to concatenate")
        grid = sets[0].grid
        for s in sets[1:]:
            if s.grid != grid:
                raise ValueError(f"cannot concatenate sets on different grids: {grid} vs {s.grid}")
        has_exp = all(s.expected_counts is not None for s in sets)
        return cls(
            grid=grid,
            counts=np.concatenate([s.counts for s in sets]),
            background=np.concatenate([s.background for s in sets]),
            exposure_s=np.concatenate([s.exposure_s for s in sets]),
            effective_area_cm2=np.concatenate([s.effective_area_cm2 for s in sets]),
            meta=pd.concat([s.meta for s in sets], ignore_index=True),
            expected_counts=np.concatenate([s.expected_counts for s in sets]) if has_exp else None,
            provenance=[p for s in sets for p in s.provenance],
        )

    # ------------------------------------------------------------------- disk
    def write(self, path: str | Path) -> Path:
        """Write to HDF5 atomically (temp file + rename), as one block of a
        :class:`~xlatent.core.hdf5_write.SpectrumSetWriter` (see it for the storage: float32
        where lossless, effective area and truth float32). Returns the path.

        Refuses (``ValueError``) values :meth:`read` would refuse (negative or non-finite
        counts, non-positive exposure, empty spec_id). Ctrl-C stops the write at the next
        block of rows: the temp file is removed, an existing ``path`` is left as it was and
        ``KeyboardInterrupt`` propagates.
        """
        return hdf5_write.write(self, path)

    @classmethod
    def read(
        cls, path: str | Path, format: str | None = None, grid: EnergyGrid | None = None
    ) -> SpectrumSet:
        """Read one file into a set: this layout, or any registered input format.

        With ``format=None`` a SpectrumSet file is read by :meth:`read_hdf5` and any other
        file goes to the input-format registry (:mod:`xlatent.io.registry`: ``"pha"``,
        ``"mmu"``, ``"spectrumset"``), which identifies it from its content; ``format`` names
        the format instead. ``grid`` puts PHA/MMU spectra on that grid (default
        :meth:`EnergyGrid.default`) and is checked against a SpectrumSet file's own grid.
        For many files, directories and globs with bad files skipped:
        :func:`xlatent.read_spectra`.
        """
        if format in (None, "spectrumset") and grid is None and hdf5_layout.is_hdf5(Path(path)):
            try:
                return cls.read_hdf5(path)
            except hdf5_layout.NotASpectrumSet:
                # Another HDF5 layout the registry knows (Multimodal Universe), else this error.
                if format is not None or hdf5_layout.format_registry()["identify"](path) in (
                    "unknown",
                    "spectrumset",
                ):
                    raise
        return hdf5_layout.format_registry()["read"](path, format=format, grid=grid)

    @classmethod
    def read_hdf5(cls, path: str | Path, check_seal: bool = True) -> SpectrumSet:
        """Read a set written by :meth:`write`, checking everything before using it.

        A file carries a SHA-256 seal of its content (:mod:`xlatent.core.seal`), checked
        before the HDF5 library parses it: a damaged file, or one changed outside xlatent, is
        refused unless ``check_seal=False``. Then any damaged, hand-edited or foreign content
        raises an :class:`XlatentError`
        whose one-line message names the file and what is wrong: :class:`SchemaError` for
        another format or schema version, a missing dataset/attribute/meta column, or a wrong
        shape or dtype; :class:`InputError` for everything else (not HDF5, truncated or
        corrupted bytes, negative or non-finite counts, exposure <= 0, grid edges not
        increasing, undecodable meta, empty or duplicate ``spec_id``, a size beyond the
        memory :func:`read_memory_limit` allows: a set bigger than memory is read in blocks
        with :meth:`open`). Shapes are checked against each other and against that limit
        before any array is read. Provenance that cannot be decoded is
        tolerated: a ``UserWarning`` names the file and the set gets one
        ``{"step": "provenance-unreadable", "reason": ...}`` record in its place.
        """
        return spectrumset_view.read(path, cls, check_seal)

    @classmethod
    def open(cls, path: str | Path, check_seal: bool = True) -> SpectrumSetView:
        """A lazy, read-only :class:`~xlatent.core.spectrumset_view.SpectrumSetView` of a
        file written by :meth:`write` or a :class:`SpectrumSetWriter`: meta in memory, rows
        read on demand (``view[a:b]``, ``view[indices]``, ``view.iter_batches()``) and checked
        as :meth:`read_hdf5` checks them. No memory limit applies to opening."""
        return spectrumset_view.SpectrumSetView(path, cls, check_seal)

    # --------------------------------------------------------------- friendly
    def summary(self) -> str:
        """A few human-readable lines: size, grid, counts, classes."""
        net_b = band_sums(self.net_counts, self.grid)["b"]
        return summary_text(repr(self), self.exposure_s, net_b, self.meta, self.has_truth)

    def plot(self, i: int = 0, ax: Any = None, rate: bool = True) -> Any:
        """Plot spectrum ``i``: net count rate per keV (or counts), background, truth."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        scale = 1.0 / (self.grid.widths_kev * (self.exposure_s[i] if rate else 1.0))
        e = self.grid.centers_kev
        ax.step(e, self.counts[i] * scale, where="mid", label="source region", lw=1)
        ax.step(e, self.background[i] * scale, where="mid", label="background (scaled)", lw=1)
        if self.expected_counts is not None:
            total = self.expected_counts[i] + self.background[i]
            ax.plot(e, total * scale, label="expected (truth)", lw=1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Energy (keV)")
        ax.set_ylabel("counts s$^{-1}$ keV$^{-1}$" if rate else "counts keV$^{-1}$")
        row = self.meta.iloc[i]
        ax.set_title(f"{row['spec_id']} {row.get('source_class', '')}".strip())
        ax.legend(fontsize="small")
        return ax


def _as_2d(arr: Any, name: str, m: int, n: int | None = None) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 1 and a.size == m:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != m:
        raise ValueError(f"{name} must have shape (n, {m}); got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows for {n} spectra")
    return a
