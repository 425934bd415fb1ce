"""ACIS pile-up arithmetic shared by the simulator, ingest and the model (Davis 2001, ApJ 562,
575; the XSPEC ``pileup`` model; the Chandra ABC Guide to Pileup, CXC 2010).

Per CCD frame the photons in the PSF core (the 3 x 3 pixel event island on the source's peak)
are Poisson with mean ``lam``; a frame with ``k`` of them gives one event at the sum of their
energies, kept with probability ``alpha**(k - 1)`` (grade migration). Counts outside the core,
a share ``1 - core`` of the source's, are not piled.

Two meta columns say how a spectrum can pile, from quantities an observer has: ``frame_time_s``
(the ACIS frame time, NaN when not an ACIS timed-exposure spectrum) and ``psf_core_fraction``
(the share of a point source's counts in the core at its off-axis angle). From them and the
observed net count rate, :func:`incident_counts_per_frame` gives the incident ``lam``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: ACIS full-frame time (s): 3.2 s exposure plus the 41 ms frame transfer.
FRAME_TIME_S = 3.241
#: ACIS frame-transfer time (s): with the dead-time factor DTCOR = exposure / frame time it
#: gives a spectrum's frame time when no keyword records it.
TRANSFER_TIME_S = 0.04104
#: Davis (2001) grade-migration parameter: a k-photon event keeps a good grade with
#: probability alpha^(k-1) (fits of piled ACIS spectra give ~0.3-0.7; XSPEC's default 0.5).
GRADE_ALPHA = 0.5
#: The meta columns that say how a spectrum can pile (see the module docstring).
PILEUP_COLUMNS = ("frame_time_s", "psf_core_fraction")
#: Largest incident core counts per frame an inversion returns. Past a peak the observed
#: rate falls as the incident one rises (core = 1, alpha = 0.5: at lam = 2 ln 2), so a rate
#: is inverted on the rising branch, up to the peak or this.
MAX_LAM = 5.0


def pileup_fraction(lam: np.ndarray) -> np.ndarray:
    """Frames with >= 2 events over frames with >= 1 event, for ``lam`` counts per frame."""
    lam = np.asarray(lam, dtype=np.float64)
    small = lam < 1e-6
    safe = np.where(small, 1.0, lam)
    f = 1.0 - safe * np.exp(-safe) / -np.expm1(-safe)
    return np.where(small, 0.5 * lam, f)


def observed_counts_per_frame(
    lam: np.ndarray, core: np.ndarray | float, alpha: float = GRADE_ALPHA
) -> np.ndarray:
    """The detected rate per frame, times ``core``, of a source with ``lam`` incident core
    counts per frame: ``(1 - core) lam + core e^-lam (e^(alpha lam) - 1) / alpha`` (the
    quantity an observer computes as rate x frame time x core fraction)."""
    lam = np.asarray(lam, dtype=np.float64)
    core = np.asarray(core, dtype=np.float64)
    return (1.0 - core) * lam + core * np.exp(-lam) * np.expm1(alpha * lam) / alpha


def incident_counts_per_frame(
    observed: np.ndarray, core: np.ndarray | float, alpha: float = GRADE_ALPHA
) -> np.ndarray:
    """Invert :func:`observed_counts_per_frame`: the incident ``lam`` of sources observed at
    ``observed`` core counts per frame, on the rising branch (at most its peak, or
    :data:`MAX_LAM`: a rate above the peak is the peak's)."""
    observed = np.asarray(observed, dtype=np.float64)
    core = np.broadcast_to(np.asarray(core, dtype=np.float64), observed.shape)

    def rising(lam: np.ndarray) -> np.ndarray:  # d observed / d lam > 0
        slope = (np.exp(-lam) - (1.0 - alpha) * np.exp(-(1.0 - alpha) * lam)) / alpha
        return (1.0 - core) + core * slope > 0

    peak = _bisect(rising, np.full(observed.shape, MAX_LAM))
    return _bisect(lambda x: observed_counts_per_frame(x, core, alpha) < observed, peak)


def _bisect(below: Callable[[np.ndarray], np.ndarray], top: np.ndarray) -> np.ndarray:
    """Per element, the point in [0, top] where ``below`` turns False (True below it); ``top``
    where it never does. 40 halvings: 5 / 2^40, far below any use."""
    lo, hi = np.zeros_like(top), top.copy()
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        b = below(mid)
        lo, hi = np.where(b, mid, lo), np.where(b, hi, mid)
    return np.where(below(top), top, 0.5 * (lo + hi))


def frame_time_from_header(timedel_s: float, exptime_s: float, dtcor: float) -> float:
    """An ACIS timed-exposure spectrum's frame time (s) from its keywords (NaN: absent): its
    TIMEDEL, else its EXPTIME (frame exposure) plus the transfer, else from its DTCOR, else
    :data:`FRAME_TIME_S`."""
    if math.isfinite(timedel_s) and timedel_s > 0:
        return float(timedel_s)
    if math.isfinite(exptime_s) and exptime_s > 0:
        return float(exptime_s) + TRANSFER_TIME_S
    if 0.5 < dtcor < 1.0:  # False for NaN
        return TRANSFER_TIME_S / (1.0 - float(dtcor))
    return FRAME_TIME_S
