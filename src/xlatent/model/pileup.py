"""Pile-up in the decoder: the counts shape of a bright ACIS source as its detector records it.

A model without it must spend latent capacity on a distortion that depends on the
observation, not the source: in the simulated demo sky the 1.7% of spectra piled >= 5% carry
half of the brightest decile's excess deviance. With ``ArchConfig.pileup_orders`` = K > 1 the
decoded counts shape ``p`` (after the effective area) is piled as the simulator and ACIS do
(:mod:`xlatent.core.pileup`; Davis 2001): per incident core photon a frame holds ``k`` photons
with weight ``e^-lam lam^(k-1) / k!``, read as one event at the sum of their energies and kept
with probability ``alpha^(k-1)``; the share ``1 - core`` outside the PSF core is not piled.
The k-fold self-convolution on the (log-spaced) grid sends each pair of bins to the bin
holding the sum of their centre energies; sums past the grid's top are lost, as on board.

``lam`` comes from the observed net rate (:func:`pileup_inputs`), never from truth; one
learned scale on it (``lam_scale``, started at 1) absorbs what the observer's estimate misses
(counts outside the grid, the grade-migration parameter of the real detector).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from xlatent.core import SpectrumSet
from xlatent.core.pileup import GRADE_ALPHA, PILEUP_COLUMNS, incident_counts_per_frame
from xlatent.core.spectrumset_view import meta_names_of, meta_of

#: Global encoder inputs of every model: log10 total counts - 2 and the background share.
N_GLOBAL_BASE = 2

#: Spectra with fewer incident core counts per frame are decoded unpiled (a pile-up fraction
#: below 0.5%: far below the Poisson noise of any spectrum; the simulator's threshold too).
MIN_LAM = 1.0e-2
#: The encoder's pile-up input is log10(1 + LAM_FEATURE_SCALE * lam): 0 when nothing piles,
#: ~1 at a 5% pile-up fraction, ~2.7 at the most piled.
LAM_FEATURE_SCALE = 100.0


def n_global(pileup_orders: int) -> int:
    """Global encoder inputs of a model: the base ones, and the pile-up rate when it piles.
    An encoder that is not told the rate cannot tell a piled spectrum from a harder source,
    and its latent is then decoded and piled a second time."""
    return N_GLOBAL_BASE + (pileup_orders > 0)


def pileup_inputs(s: SpectrumSet, amplitude: np.ndarray) -> np.ndarray:
    """(n, 2) float64: incident core counts per frame ``lam`` and the PSF core share of each
    spectrum, from its observed net counts ``amplitude``, ``exposure_s`` and the meta columns
    ``frame_time_s`` and ``psf_core_fraction``; (0, 0) where either is missing or not finite."""
    n = len(amplitude)
    out = np.zeros((n, 2))
    if not set(PILEUP_COLUMNS) <= set(meta_names_of(s)):
        return out
    meta = meta_of(s, list(PILEUP_COLUMNS))
    frame = pd_float(meta["frame_time_s"])
    core = pd_float(meta["psf_core_fraction"])
    known = np.isfinite(frame) & np.isfinite(core) & (frame > 0) & (core > 0) & (core <= 1)
    if not known.any():
        return out
    exposure = np.asarray(s.exposure_s, dtype=np.float64)
    observed = np.asarray(amplitude, dtype=np.float64) / np.maximum(exposure, 1e-9) * frame * core
    lam = incident_counts_per_frame(np.where(known, observed, 0.0), np.where(known, core, 0.0))
    out[known, 0], out[known, 1] = lam[known], core[known]
    return out


def pd_float(col: pd.Series) -> np.ndarray:
    """A meta column as float64 (NaN where it does not parse)."""
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)


def pair_targets(edges_kev: np.ndarray) -> np.ndarray:
    """(m * m,) int64: the bin of the summed centre energies of each pair of bins (i, j),
    row-major; ``m`` for sums past the grid's top."""
    edges = np.asarray(edges_kev, dtype=np.float64)
    centre = 0.5 * (edges[:-1] + edges[1:])
    total = (centre[:, None] + centre[None, :]).ravel()
    return np.searchsorted(edges, total, side="right") - 1  # >= edges[1] > 0: never < 0


class Pileup(nn.Module):
    """Counts shape p (B, m, sums to 1) and (lam, core) (B, 2) -> piled shape (B, m), unnormalised
    (events lost to grade migration and past the grid's top are gone)."""

    def __init__(self, edges_kev: np.ndarray, orders: int, alpha: float = GRADE_ALPHA) -> None:
        super().__init__()
        self.orders, self.alpha = orders, alpha
        self.m = len(edges_kev) - 1
        targets = np.minimum(pair_targets(edges_kev), self.m)
        self.register_buffer("_targets", torch.tensor(targets), persistent=False)
        self.log_lam_scale = nn.Parameter(torch.zeros(()))

    def convolve(self, a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """The distribution of the summed energy of independent draws from ``a`` and ``p``."""
        pairs = (a[:, :, None] * p[:, None, :]).reshape(a.shape[0], -1)
        out = pairs.new_zeros(a.shape[0], self.m + 1)
        return out.index_add(1, self._targets, pairs)[:, : self.m]

    def forward(self, p: torch.Tensor, pileup: torch.Tensor) -> torch.Tensor:
        lam = pileup[:, :1] * torch.exp(self.log_lam_scale)
        core = pileup[:, 1:]
        total = torch.exp(-lam) * p
        conv = p
        for k in range(2, self.orders + 1):
            conv = self.convolve(conv, p)
            log_w = (k - 1) * torch.log(lam.clamp_min(1e-30)) - math.lgamma(k + 1)
            total = total + torch.exp(log_w - lam) * self.alpha ** (k - 1) * conv
        return (1.0 - core) * p + core * total
