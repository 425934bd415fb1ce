"""The common energy grid and count-conserving regridding onto it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xlatent.core.vocabulary import CSC_BAND_EDGES_KEV


@dataclass(frozen=True, eq=False)
class EnergyGrid:
    """Contiguous energy bins, edges in keV (strictly increasing)."""

    edges_kev: np.ndarray

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges_kev, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2:
            raise ValueError("an energy grid needs at least two edges")
        if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0) or edges[0] <= 0:
            raise ValueError("energy grid edges must be positive, finite and increasing")
        edges.setflags(write=False)
        object.__setattr__(self, "edges_kev", edges)

    @classmethod
    def default(cls) -> EnergyGrid:
        """0.5-8.0 keV, 128 log-spaced bins with the CSC band edges as bin edges."""
        return cls.log(0.5, 8.0, 128)

    @classmethod
    def log(
        cls,
        emin_kev: float = 0.5,
        emax_kev: float = 8.0,
        n_bins: int = 128,
        anchors_kev: tuple[float, ...] = CSC_BAND_EDGES_KEV,
    ) -> EnergyGrid:
        """Log-spaced bins between ``emin_kev`` and ``emax_kev``.

        Every anchor strictly inside the range becomes a bin edge (bins are shared out
        between the anchored segments in proportion to their log width), so counts in the
        CSC bands are exact sums of grid bins rather than interpolations.
        """
        if not 0 < emin_kev < emax_kev:
            raise ValueError("need 0 < emin_kev < emax_kev")
        knots = [emin_kev, *(a for a in anchors_kev if emin_kev < a < emax_kev), emax_kev]
        knots = sorted(set(knots))
        n_seg = len(knots) - 1
        if n_bins < n_seg:
            raise ValueError(f"n_bins={n_bins} is smaller than the {n_seg} anchored segments")
        logw = np.diff(np.log(knots))
        share = logw / logw.sum() * n_bins
        counts = np.maximum(1, np.floor(share).astype(int))
        # Largest remainders get the leftover bins, so the total is exactly n_bins.
        while counts.sum() < n_bins:
            counts[np.argmax(share - counts)] += 1
        while counts.sum() > n_bins:
            counts[np.argmax(np.where(counts > 1, counts - share, -np.inf))] -= 1
        pieces = [
            np.geomspace(lo, hi, k + 1)[:-1]
            for lo, hi, k in zip(knots[:-1], knots[1:], counts, strict=True)
        ]
        edges = np.concatenate([*pieces, [knots[-1]]])
        return cls(edges)

    @property
    def n_bins(self) -> int:
        return self.edges_kev.size - 1

    @property
    def lo_kev(self) -> np.ndarray:
        return self.edges_kev[:-1]

    @property
    def hi_kev(self) -> np.ndarray:
        return self.edges_kev[1:]

    @property
    def centers_kev(self) -> np.ndarray:
        """Geometric bin centres (the grid is logarithmic)."""
        return np.sqrt(self.lo_kev * self.hi_kev)

    @property
    def widths_kev(self) -> np.ndarray:
        return np.diff(self.edges_kev)

    def band_mask(self, lo_kev: float, hi_kev: float) -> np.ndarray:
        """Boolean mask of bins lying inside [lo_kev, hi_kev] (to a relative 1e-9)."""
        tol = 1e-9 * hi_kev
        return (self.lo_kev >= lo_kev - tol) & (self.hi_kev <= hi_kev + tol)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnergyGrid):
            return NotImplemented
        return self.edges_kev.shape == other.edges_kev.shape and bool(
            np.allclose(self.edges_kev, other.edges_kev, rtol=1e-9, atol=0)
        )

    def __hash__(self) -> int:
        return hash(np.round(self.edges_kev, 9).tobytes())

    def __repr__(self) -> str:
        return (
            f"EnergyGrid({self.n_bins} bins, {self.edges_kev[0]:.3g}-{self.edges_kev[-1]:.3g} keV)"
        )


def overlap_matrix(lo_kev: np.ndarray, hi_kev: np.ndarray, edges_kev: np.ndarray) -> sp.csr_matrix:
    """Fraction of each input bin [lo, hi) falling in each output bin of ``edges_kev``.

    Returns a sparse (n_in, n_out) matrix ``W``; ``x @ W`` moves a per-input-bin quantity that
    is spread uniformly inside each input bin (counts) onto the output bins, conserving its sum
    over the range the output covers. Input bins of zero width carry nothing.
    """
    lo = np.asarray(lo_kev, dtype=np.float64)
    hi = np.asarray(hi_kev, dtype=np.float64)
    edges = np.asarray(edges_kev, dtype=np.float64)
    width = hi - lo
    # Output bins touched by each input bin: [first, last].
    first = np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, edges.size - 2)
    last = np.clip(np.searchsorted(edges, hi, side="left") - 1, 0, edges.size - 2)
    n_touch = np.maximum(last - first + 1, 0)
    rows = np.repeat(np.arange(lo.size), n_touch)
    offs = np.arange(n_touch.sum()) - np.repeat(np.cumsum(n_touch) - n_touch, n_touch)
    cols = np.repeat(first, n_touch) + offs
    ov = np.minimum(hi[rows], edges[cols + 1]) - np.maximum(lo[rows], edges[cols])
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(width[rows] > 0, ov / width[rows], 0.0)
    keep = frac > 0
    return sp.csr_matrix((frac[keep], (rows[keep], cols[keep])), shape=(lo.size, edges.size - 1))


def regrid_counts(
    counts: np.ndarray, lo_kev: np.ndarray, hi_kev: np.ndarray, grid: EnergyGrid
) -> np.ndarray:
    """Counts per input bin (last axis) apportioned by overlap onto ``grid``."""
    w = overlap_matrix(lo_kev, hi_kev, grid.edges_kev)
    return np.asarray(w.T @ np.asarray(counts, dtype=np.float64).T).T


def bin_average(
    values: np.ndarray, lo_kev: np.ndarray, hi_kev: np.ndarray, grid: EnergyGrid
) -> np.ndarray:
    """Overlap-weighted mean of a per-input-bin quantity (e.g. ARF cm^2) on each grid bin.

    Grid bins that no input bin covers get 0.
    """
    lo = np.asarray(lo_kev, dtype=np.float64)
    hi = np.asarray(hi_kev, dtype=np.float64)
    w = overlap_matrix(lo, hi, grid.edges_kev)
    # Overlap in keV = fraction * input width; normalise by covered width of each grid bin.
    kev = sp.diags(hi - lo) @ w
    covered = np.asarray(kev.sum(axis=0)).ravel()
    total = np.asarray(kev.T @ np.asarray(values, dtype=np.float64)).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(covered > 0, total / covered, 0.0)
