"""Spectra as comparable shapes: coarse bins, divided by the effective area, unit integral.

Two spectra observed through different responses and exposures are compared by their
approximate photon spectra: net counts per coarse bin divided by (effective area x exposure
x bin width), normalised to a unit integral over the grid. A model's (or the simulator's)
expected source counts go through the same steps, normalised by the *observed* spectrum's
integral, so they overlay it. Used by the figure of ``xlatent similar`` and the explorer
page, whose per-point spectra must stay small (32 bins, one byte each: :func:`encode_log`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Coarse bins of the shapes shown (128 grid bins -> 4 per coarse bin).
N_COARSE = 32


def coarse_groups(n_bins: int, n_coarse: int = N_COARSE) -> np.ndarray:
    """Start index of each of ``min(n_coarse, n_bins)`` contiguous groups of grid bins."""
    groups = np.array_split(np.arange(n_bins), min(n_coarse, n_bins))
    return np.array([g[0] for g in groups], dtype=np.int64)


def coarse_edges(edges_kev: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Edges (keV) of the coarse bins that start at grid bins ``starts``."""
    return np.append(np.asarray(edges_kev)[starts], edges_kev[-1])


def coarse_shapes(
    s: Any,
    rows: np.ndarray | None = None,
    expected_source_counts: np.ndarray | None = None,
    n_coarse: int = N_COARSE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(edges_kev, observed, expected)`` shapes of the SpectrumSet ``s``'s ``rows``.

    ``observed`` (len(rows), n_coarse): net photon flux density per keV divided by its
    integral (NaN where the bins have no effective area, or the spectrum has no positive net
    counts); ``expected``: the same for ``expected_source_counts`` (rows aligned with
    ``rows``), scaled by the observed spectrum's integral, or None.
    """
    rows = np.arange(len(s)) if rows is None else np.asarray(rows)
    starts = coarse_groups(s.grid.n_bins, n_coarse)
    edges = coarse_edges(s.grid.edges_kev, starts)
    width = np.diff(edges)
    net = np.asarray(s.counts)[rows] - np.asarray(s.background)[rows]
    exposure = np.asarray(s.exposure_s, dtype=np.float64)[rows]
    area_kev = np.asarray(s.effective_area_cm2)[rows] * s.grid.widths_kev[None, :]
    # cm^2 s keV of each coarse bin: what turns its counts into a photon flux density.
    acceptance = np.add.reduceat(area_kev, starts, axis=1) * exposure[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(acceptance > 0, 1.0 / acceptance, np.nan)
        flux = np.add.reduceat(net, starts, axis=1) * inv
        total = np.nansum(flux * width, axis=1)
        norm = np.where(total > 0, total, np.nan)[:, None]
        observed = flux / norm
        expected = None
        if expected_source_counts is not None:
            e = np.add.reduceat(np.asarray(expected_source_counts, dtype=np.float64), starts,
                                axis=1) * inv  # fmt: skip
            e_total = np.nansum(e * width, axis=1)
            # No positive observed integral (a faint, background-dominated spectrum): scale
            # the expectation by its own, so it still shows.
            e_norm = np.where(np.isfinite(norm[:, 0]), norm[:, 0], np.where(e_total > 0,
                              e_total, np.nan))[:, None]  # fmt: skip
            expected = e / e_norm
    return edges, observed, expected


def log_range(*arrays: np.ndarray | None, lo_q: float = 0.5, hi_q: float = 99.5) -> tuple:
    """(lo, hi) of log10 of the positive values of ``arrays`` (percentiles, padded)."""
    vals = [np.log10(a[np.isfinite(a) & (a > 0)]) for a in arrays if a is not None]
    flat = np.concatenate(vals) if vals else np.array([])
    if flat.size == 0:
        return -3.0, 1.0
    lo, hi = np.percentile(flat, [lo_q, hi_q])
    return float(lo) - 0.1, float(max(hi, lo + 0.5)) + 0.1


def encode_log(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 codes of log10(values): 1..255 spans [lo, hi] (clipped), 0 = missing or <= 0.

    255 levels over a few decades is ~0.02 dex a step, far below the photon noise of a
    coarse bin; :func:`decode_log` (and the explorer's JavaScript) inverts it.
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.log10(np.where(ok, v, 1.0)) - lo) / (hi - lo)
    code = 1 + np.rint(np.clip(t, 0.0, 1.0) * 254.0)
    return np.where(ok, code, 0).astype(np.uint8)


def decode_log(codes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Values from :func:`encode_log` codes (NaN for 0)."""
    c = np.asarray(codes, dtype=np.float64)
    return np.where(c > 0, 10.0 ** (lo + (c - 1.0) / 254.0 * (hi - lo)), np.nan)


__all__ = ["N_COARSE", "coarse_edges", "coarse_groups", "coarse_shapes", "decode_log",
           "encode_log", "log_range"]  # fmt: skip
