"""ACIS pile-up of bright simulated sources (Davis 2001, ApJ 562, 575).

ACIS reads a CCD frame every ``FRAME_TIME_S`` (3.2 s exposure + 41 ms transfer, full frame);
two or more photons landing in one event-detection island (3 x 3 pixels) within a frame are
read as one event whose pulse height is the sum of theirs (*energy pile-up*), and whose
shape often fails the on-board grade filter (*grade migration*: the event is lost).
Following Davis (2001) and the XSPEC ``pileup`` model, per frame the number of photons in the
PSF core is Poisson with mean ``lam`` (counts per frame in the core); a frame with ``k``
photons yields one event with the ``k``-fold self-convolution of the channel spectrum,
kept with probability ``alpha**(k - 1)`` (``GRADE_ALPHA``). Counts outside the core are not
piled. The pile-up fraction is the Chandra ABC Guide to Pileup's (CXC 2010; POG ch. 6.15):
frames with two or more events over frames with one or more,
``(1 - e^-lam - lam e^-lam) / (1 - e^-lam)`` (about ``lam / 2`` when small).

The core is the 3 x 3 pixel island centred on the source; its share of the counts
(:func:`xlatent.instrument.family.core_fraction`) is 0.79 on-axis and falls off-axis as the PSF
grows. The constants and the pile-up fraction are shared with ingest and the model
(:mod:`xlatent.core.pileup`).
"""

from __future__ import annotations

import numpy as np
from scipy import fft
from scipy.stats import poisson

from xlatent.core.pileup import FRAME_TIME_S, GRADE_ALPHA, pileup_fraction
from xlatent.instrument.family import core_fraction

__all__ = [
    "FRAME_TIME_S",
    "GRADE_ALPHA",
    "MAX_PILED",
    "MIN_LAM",
    "channel_shift",
    "core_fraction",
    "counts_per_frame",
    "pile",
    "pileup_fraction",
]

#: Most photons piled into one event (frames with more are counted as lost).
MAX_PILED = 6
#: Below this many core counts per frame the spectrum is left as it is (pile-up fraction
#: < 0.5%: a distortion far below the Poisson noise of any simulated spectrum).
MIN_LAM = 1.0e-2
#: Frames with more piled photons than the highest order kept are this rare (or rarer).
TAIL_PROBABILITY = 1.0e-6


def counts_per_frame(rate_cps: np.ndarray, theta_arcmin: np.ndarray) -> np.ndarray:
    """Expected source counts per frame in the PSF core (``lam``) for a detected count rate."""
    return np.asarray(rate_cps) * FRAME_TIME_S * core_fraction(theta_arcmin)


def channel_shift(e_min_kev: np.ndarray, e_max_kev: np.ndarray) -> float:
    """Channel-index offset of the summed energy of two events: pulse heights add, so two
    photons in channels i and j give the channel of E_i + E_j, at index i + j + shift."""
    width = float(np.median(e_max_kev - e_min_kev))
    return 0.5 * (e_min_kev[0] + e_max_kev[0]) / width


def pile(
    chan: np.ndarray, lam: np.ndarray, shift: float, alpha: float = GRADE_ALPHA,
    core: np.ndarray | float = 1.0,
) -> np.ndarray:  # fmt: skip
    """Piled expected channel counts of spectra ``chan`` (k, n_chan; incident counts).

    ``lam`` (k,): incident core counts per frame; ``core``: the share of each spectrum in the
    core (the rest is not piled). Energies beyond the last channel are lost, as on board.
    Spectra are piled in groups needing the same number of orders (most need 2 or 3)."""
    chan = np.atleast_2d(np.asarray(chan, dtype=np.float64))
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    core = np.broadcast_to(np.asarray(core, dtype=np.float64), lam.shape)
    # Orders up to the one beyond which frames are negligible, per spectrum.
    k_need = np.clip(poisson.isf(TAIL_PROBABILITY, lam), 1, MAX_PILED).astype(int)
    out = np.empty_like(chan)
    for k_max in np.unique(k_need):
        rows = np.flatnonzero(k_need == k_max)
        out[rows] = _pile(chan[rows], lam[rows], shift, alpha, core[rows], int(k_max))
    return out


def _pile(
    chan: np.ndarray, lam: np.ndarray, shift: float, alpha: float, core: np.ndarray, k_max: int
) -> np.ndarray:
    n_chan = chan.shape[1]
    total = chan.sum(axis=1)
    p = chan / np.where(total > 0, total, 1.0)[:, None]
    # Frames in the exposure: the core counts over lam.
    frames = np.where(lam > 0, core * total / np.where(lam > 0, lam, 1.0), 0.0)
    n_fft = fft.next_fast_len(k_max * n_chan + int(round(k_max * shift)) + 1, real=True)
    spec_f = fft.rfft(p, n_fft, axis=1)
    freq = np.arange(spec_f.shape[1])
    # Every order in one inverse transform: the k-fold convolution is spec_f**k, shifted
    # by its channel offset (a phase ramp; n_fft leaves room, so nothing wraps round).
    total_f = np.zeros_like(spec_f)
    power = np.ones_like(spec_f)
    log_fact = 0.0
    for k in range(1, k_max + 1):
        power = power * spec_f if k > 1 else spec_f
        log_fact += np.log(k)
        weight = frames * np.exp(k * np.log(np.maximum(lam, 1e-300)) - lam - log_fact)
        weight *= alpha ** (k - 1)
        off = int(round((k - 1) * shift))
        ramp = np.exp(-2j * np.pi * freq * off / n_fft) if off else 1.0
        total_f += weight[:, None] * power * ramp
    piled = fft.irfft(total_f, n_fft, axis=1)[:, :n_chan]
    return (1.0 - core)[:, None] * chan + np.maximum(piled, 0.0)
