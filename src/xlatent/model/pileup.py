"""Pile-up in the decoder: the counts shape of a bright ACIS source as its detector records it.

A model without it must spend latent capacity on a distortion that depends on the
observation, not the source: in the simulated demo sky the 1.7% of spectra piled >= 5% carry
half of the brightest decile's excess deviance. With ``ArchConfig.pileup_orders`` = K > 1 the
decoded counts shape ``p`` (after the effective area) is piled as the simulator and ACIS do
(:mod:`xlatent.core.pileup`; Davis 2001): per incident core photon a frame holds ``k`` photons
with weight ``e^-lam lam^(k-1) / k!``, read as one event at the sum of their energies and kept
with probability ``alpha^(k-1)``; the share ``1 - core`` outside the PSF core is not piled.
The k-fold self-convolution runs as the k-th power of one FFT on a fine linear grid (the
shape spread over each log bin, then binned back); sums past the grid's top are lost, as on
board.

``lam`` comes from the observed net rate (:func:`pileup_inputs`), never from truth; one
learned scale on it (``lam_scale``, started at 1) absorbs what the observer's estimate misses
(counts outside the grid, the grade-migration parameter of the real detector).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy.fft import next_fast_len
from torch import nn

from xlatent.core import SpectrumSet
from xlatent.core.grid import overlap_matrix
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


#: Bin width (keV) of the linear grid the self-convolutions run on: half the ACIS resolution
#: at 1 keV. Against the simulator's channel pile-up (14.6 eV channels) 0.011-0.05 keV bins
#: give the same residual (0.105 deviance per bin at 1e5 counts, worst of 12 spectra): what
#: remains are photons below the grid's 0.5 keV, which pile on board and not here.
LINEAR_BIN_KEV = 0.05


def linear_grid(edges_kev: np.ndarray) -> tuple[np.ndarray, int]:
    """Edges of a linear grid of bins <= :data:`LINEAR_BIN_KEV` from the log grid's lowest
    edge ``e0`` to past its top, ``e0`` a whole number of bins plus a half, so that the sum
    of k photons lands exactly ``(k - 1) * shift`` bins above their index sum; and ``shift``."""
    edges = np.asarray(edges_kev, dtype=np.float64)
    e0 = edges[0]
    shift = int(np.ceil(e0 / LINEAR_BIN_KEV + 0.5))
    width = e0 / (shift - 0.5)
    n = int(np.ceil((edges[-1] - e0) / width))
    return e0 + width * np.arange(n + 1), shift


class Pileup(nn.Module):
    """Counts shape p (B, m, sums to 1) and (lam, core) (B, 2) -> piled shape (B, m), unnormalised
    (events lost to grade migration and past the grid's top are gone).

    The self-convolutions run as powers of one FFT on a fine linear grid (as the simulator's
    on PI channels): p is spread uniformly over each log bin onto it, and every order's
    spectrum is binned back; the unpiled share stays on the log grid as it is."""

    def __init__(self, edges_kev: np.ndarray, orders: int, alpha: float = GRADE_ALPHA) -> None:
        super().__init__()
        self.orders, self.alpha = orders, alpha
        edges = np.asarray(edges_kev, dtype=np.float64)
        lin, self.shift = linear_grid(edges)
        self.n_lin = lin.size - 1
        self.n_fft = next_fast_len(orders * (self.n_lin + self.shift) + 1, real=True)
        to_lin = overlap_matrix(edges[:-1], edges[1:], lin).toarray()
        to_log = overlap_matrix(lin[:-1], lin[1:], edges).toarray()
        self.register_buffer("_to_lin", torch.tensor(to_lin, dtype=torch.float32), persistent=False)
        self.register_buffer("_to_log", torch.tensor(to_log, dtype=torch.float32), persistent=False)
        freq = np.arange(self.n_fft // 2 + 1)
        ramp = np.exp(-2j * np.pi * freq * self.shift / self.n_fft)  # one order's offset
        self.register_buffer("_ramp", torch.tensor(ramp, dtype=torch.complex64), persistent=False)
        self.log_lam_scale = nn.Parameter(torch.zeros(()))

    def forward(self, p: torch.Tensor, pileup: torch.Tensor) -> torch.Tensor:
        lam = pileup[:, :1] * torch.exp(self.log_lam_scale)
        core = pileup[:, 1:]
        spec_f = torch.fft.rfft(p @ self._to_lin, self.n_fft, dim=-1)
        total_f = torch.zeros_like(spec_f)
        power = spec_f
        for k in range(2, self.orders + 1):
            power = power * spec_f * self._ramp
            log_w = (k - 1) * torch.log(lam.clamp_min(1e-30)) - math.lgamma(k + 1) - lam
            total_f = total_f + torch.exp(log_w) * self.alpha ** (k - 1) * power
        piled = torch.fft.irfft(total_f, self.n_fft, dim=-1)[:, : self.n_lin].clamp_min(0.0)
        return (1.0 - core) * p + core * (torch.exp(-lam) * p + piled @ self._to_log)
