"""Preprocessing shared by the autoencoder and the PCA baseline, and the Poisson deviance.

Amplitude is separated from shape before anything is learned:

- ``amplitude`` N = max(sum(counts) - sum(background), 1): the observed total *net* source
  counts. Reconstructions are ``N * p`` with ``p`` a normalised shape (sums to 1 over bins), so
  a latent never has to carry brightness or exposure. The floor of one count keeps
  background-dominated spectra (net <= 0) usable.
- ``net shape`` y_i = max(c_i - b_i, 0) / sum_j max(c_j - b_j, 0), input transform
  x_i = log1p(m * y_i). ``m * y`` is ~1 for a flat spectrum whatever the brightness, and the log
  compresses the 10^3 dynamic range of absorbed spectra while keeping zero counts at 0 (it is
  finite for the many zero bins of low-count spectra, unlike log y). The PCA baseline works on
  exactly this ``x``.
- ``background share`` log1p(m * b_i / max(sum c, 1)): how much of each bin is background.
- ``log relative area`` log(A_i / mean A): the instrument's effective-area curve, so the
  encoder can tell instrument shape from source shape and the decoder can multiply it back.
- global features: log10 of total source-region counts (the signal-to-noise the encoder
  should trust the shape with), the background fraction, and log10(1 + 100 lam) with ``lam``
  the incident counts per frame in the PSF core (:mod:`xlatent.model.pileup`; read only by
  models that pile up, ``n_global`` = 3).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from xlatent.core import InputError, SpectrumSet
from xlatent.core.area_kind import plain_mean_areas
from xlatent.core.spectrumset_view import meta_names_of, meta_of
from xlatent.model.pileup import LAM_FEATURE_SCALE, pileup_inputs

#: Relative floor on the effective area (fraction of a spectrum's maximum) before taking logs;
#: bins with no ARF coverage would otherwise get log(0).
AREA_FLOOR = 1e-3
#: Floor on a reconstructed shape so that a bin with counts never gets an expectation of 0.
SHAPE_FLOOR = 1e-9
N_CHANNELS = 3


def poisson_deviance(counts: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Poisson deviance (C-stat minus its minimum) of ``counts`` given expectations ``model``.

    ``2 * sum_i [m_i - c_i + c_i * log(c_i / m_i)]`` over the last axis, with the
    ``c * log(c/m)`` term equal to 0 where ``c == 0``. Both arrays are (n, m) or (m,); returns
    one value per spectrum. ``model`` is the expected count in the *same region* as ``counts``
    (for source-region counts: predicted source counts plus the scaled background).
    """
    c = np.asarray(counts, dtype=np.float64)
    mu = np.asarray(model, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        clog = np.where(c > 0, c * np.log(np.where(c > 0, c, 1.0) / mu), 0.0)
    return 2.0 * np.sum(mu - c + clog, axis=-1)


def check_finite(s: SpectrumSet) -> None:
    """Refuse a set with NaN/inf in the arrays the model reads (one-line message)."""
    arrays = {
        "counts": s.counts,
        "background": s.background,
        "effective_area_cm2": s.effective_area_cm2,
        "exposure_s": s.exposure_s[:, None],
    }
    for name, arr in arrays.items():
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            first = s.meta["spec_id"].iloc[int(np.flatnonzero(bad)[0])]
            raise InputError(
                name,
                f"NaN/inf in {int(bad.sum())} spectra (first: {first}); "
                "drop or repair them before using the model",
            )
    if (s.counts < 0).any() or (s.background < 0).any():
        raise InputError("counts", "negative source or background counts")


@dataclass
class Prepared:
    """Arrays derived from a SpectrumSet (float64, n spectra, m bins)."""

    counts: np.ndarray  # (n, m) source-region counts
    background: np.ndarray  # (n, m) scaled background counts
    amplitude: np.ndarray  # (n,) N, total net counts (>= 1)
    features: np.ndarray  # (n, m, N_CHANNELS) per-bin encoder inputs
    global_features: np.ndarray  # (n, 3): N_GLOBAL_BASE and the pile-up rate's
    log_area: np.ndarray  # (n, m) log(A / mean A), 0 where the area is unknown
    pileup: np.ndarray  # (n, 2) incident core counts per frame, PSF core share (0: none)

    @property
    def net_shape_x(self) -> np.ndarray:
        """The transformed normalised net spectrum x = log1p(m * y) (PCA's input)."""
        return self.features[:, :, 0]


#: Said once per process when a set's areas are the ARF's plain bin means.
PLAIN_MEAN_WARNING = (
    "this set's effective areas are the ARF's plain bin means (simulated or ingested by "
    "xlatent before 2026-12-04); models since expect the ARF folded through the RMF "
    "(xlatent.instrument.folded_area): simulate or ingest the set again"
)


def prepare(s: SpectrumSet, check_area: bool = True) -> Prepared:
    """Compute amplitude, encoder features and log relative area for every spectrum;
    ``check_area``: warn when the set's areas are not what the autoencoder learned from."""
    check_finite(s)
    if check_area and plain_mean_areas(getattr(s, "provenance", ())):
        warnings.warn(PLAIN_MEAN_WARNING, UserWarning, stacklevel=2)
    c, b = s.counts, s.background
    m = c.shape[1]
    total = c.sum(axis=1)
    amp = np.maximum(total - b.sum(axis=1), 1.0)
    denom = np.maximum(total, 1.0)[:, None]
    feats = np.stack(
        [
            log_shape(np.clip(c - b, 0.0, None)),
            np.log1p(m * b / denom),
            log_relative_area(s.effective_area_cm2),
        ],
        axis=-1,
    )
    log_area = feats[:, :, 2].copy()
    pileup = pileup_inputs(s, amp)
    glob = np.stack(
        [
            np.log10(np.maximum(total, 1.0)) - 2.0,
            b.sum(axis=1) / np.maximum(total, 1.0),
            np.log10(1.0 + LAM_FEATURE_SCALE * pileup[:, 0]),
        ],
        axis=1,
    )
    return Prepared(c, b, amp, feats, glob, log_area, pileup)


def log_shape(net: np.ndarray) -> np.ndarray:
    """x = log1p(m * y): ``net`` (n, m), non-negative, normalised per row to y (sums to 1).

    The model's input transform of the net spectrum (see the module docstring), also used by
    the analyses' ``spectrum`` reference set. A row with no counts gives x = 0.
    """
    net = np.asarray(net)
    total = net.sum(axis=1, keepdims=True)
    y = np.divide(net, total, out=np.zeros_like(net), where=total > 0)
    return np.log1p(net.shape[1] * y)


def log_relative_area(area: np.ndarray) -> np.ndarray:
    """log(A / mean A) per spectrum, floored at AREA_FLOOR * max; 0 for an all-zero row."""
    a = np.asarray(area, dtype=np.float64)
    amax = a.max(axis=1, keepdims=True)
    known = amax > 0
    a = np.where(known, np.maximum(a, AREA_FLOOR * np.where(known, amax, 1.0)), 1.0)
    out = np.log(a)
    return out - out.mean(axis=1, keepdims=True)


def shape_to_counts(shape: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    """Clip a (possibly unnormalised) shape at a floor, renormalise, scale by the amplitude."""
    p = np.maximum(np.asarray(shape, dtype=np.float64), SHAPE_FLOOR)
    p /= p.sum(axis=1, keepdims=True)
    return p * np.asarray(amplitude, dtype=np.float64)[:, None]


def x_to_shape(x: np.ndarray) -> np.ndarray:
    """Invert the input transform x = log1p(m * y) to an (unnormalised, clipped) shape."""
    m = x.shape[1]
    return np.clip(np.expm1(x), 0.0, None) / m


#: Meta flags (False: not known) and what the Poisson loss needs of each spectrum.
POISSON_NEEDS = {
    "effective_area_known": "effective area",
    "background_known": "background",
}


def check_loss_inputs(spectrum_set: SpectrumSet, loss: str) -> None:
    """Refuse ``loss="poisson"`` on spectra whose effective area or background is unknown.

    The deviance models the observed source-region counts as ``N * p + B``: with no ARF
    (``effective_area_known`` False) the shape is not a photon shape, and with the background
    already subtracted (``background_known`` False, Multimodal Universe files) the "counts"
    are net and ``B`` is unknown. One-line ``ValueError`` naming the column, how many spectra
    and the first; ``loss="mse"`` is the way to train on such a set.
    """
    if loss != "poisson":
        return
    names = meta_names_of(spectrum_set)  # a lazy view reads only the flag columns
    for col, what in POISSON_NEEDS.items():
        if col not in names:
            continue
        flag = meta_of(spectrum_set, [col])[col]
        known = flag.map(lambda v: v is None or v != v or bool(v)).to_numpy(dtype=bool)
        if not known.all():
            bad = np.flatnonzero(~known)
            first = str(meta_of(spectrum_set, ["spec_id"], bad[:1])["spec_id"].iloc[0])
            raise ValueError(
                f"loss='poisson' needs the {what} of every spectrum, but {bad.size} "
                f"of {len(flag)} have {col} == False (first {first!r}; e.g. Multimodal Universe "
                "spectra: background-subtracted, no ARF); train with loss='mse'"
            )


def decode_log_area(effective_area_cm2: np.ndarray | None, n: int, n_bins: int) -> np.ndarray:
    """log(A / mean A) (n, n_bins) for decoding ``n`` latents: zeros (a flat area) for None,
    else an (n, n_bins) or (n_bins,) area in cm^2, checked (one-line ValueError)."""
    if effective_area_cm2 is None:
        return np.zeros((n, n_bins))
    area = np.atleast_2d(np.asarray(effective_area_cm2, dtype=np.float64))
    if area.shape not in ((n, n_bins), (1, n_bins)):
        raise ValueError(
            f"effective_area_cm2 must be ({n}, {n_bins}) or ({n_bins},); "
            f"got {np.shape(effective_area_cm2)}"
        )
    if not (np.isfinite(area).all() and (area >= 0).all()):
        raise ValueError("effective_area_cm2 must be finite and >= 0")
    return np.array(np.broadcast_to(log_relative_area(area), (n, n_bins)))  # a writable copy
