"""Latent uncertainties by Poisson resampling, and the deviance a spectrum's counts predict.

Errors (:func:`encode_with_errors`): every spectrum is redrawn ``n_draws`` times and each draw
encoded, all in one pass over ``n * n_draws`` rows (in chunks); ``latent_<i>_err`` is the
standard deviation of the draws' latents times the model's calibration scale. The draws are a
*parametric* bootstrap: Poisson(N p + B), the model's own reconstruction of the spectrum plus
its scaled background (kept fixed, as its noise is that of a much larger region). Redrawing
the observed counts instead (Poisson(c), the plain bootstrap) never puts a photon in an empty
bin, so it underestimates the spread of faint spectra, which are mostly empty bins.

Deviance moments (:func:`deviance_zscore`): under Poisson counts with means mu the deviance of
a bin has a mean and variance that depend on mu alone (~1 and ~2 when mu is large, less when
it is small); both are tabulated once on a log grid of mu, so the expected deviance of a whole
spectrum and its spread follow from its predicted means without any draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core import SpectrumSet
from xlatent.core.pileup import PILEUP_COLUMNS
from xlatent.core.spectrumset_view import meta_names_of, meta_of

__all__ = [
    "DEFAULT_N_DRAWS",
    "Encoded",
    "deviance_moments",
    "deviance_zscore",
    "encode_and_reconstruct",
    "encode_with_errors",
    "resampled_set",
]

#: Draws per spectrum for ``latent_<i>_err`` (the CLI's ``--error-draws`` default).
DEFAULT_N_DRAWS = 16
#: Rows encoded at once (n spectra x draws): bounds memory at ~200 MB for 128 bins.
CHUNK_ROWS = 32768
_LOG_MU = np.linspace(np.log(1e-6), np.log(1e4), 241)


@dataclass
class Encoded:
    """What :func:`encode_with_errors` returns (n spectra, d latents)."""

    latents: np.ndarray  # (n, d)
    errors: np.ndarray | None  # (n, d) calibrated standard errors; None when n_draws = 0
    deviance: np.ndarray  # (n,) Poisson deviance of the counts given N p + B
    deviance_z: np.ndarray  # (n,) its z-score against the Poisson expectation for N p + B
    ood_score: np.ndarray  # (n,) the calibration's score; deviance_z when the model has none
    ood_flag: np.ndarray | None  # (n,) bool, ood_score > threshold; None without calibration


@lru_cache(maxsize=1)
def _moment_table() -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of one bin's deviance 2[mu - c + c log(c/mu)], c ~ Poisson(mu),
    on the grid :data:`_LOG_MU` (exact sums over c)."""
    from scipy.stats import poisson

    mean, var = np.empty(_LOG_MU.size), np.empty(_LOG_MU.size)
    for k, mu in enumerate(np.exp(_LOG_MU)):
        c = np.arange(0, int(mu + 12 * np.sqrt(mu) + 30))
        pmf = poisson.pmf(c, mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 2 * (mu - c + np.where(c > 0, c * np.log(np.maximum(c, 1) / mu), 0.0))
        mean[k] = np.sum(pmf * d)
        var[k] = np.sum(pmf * (d - mean[k]) ** 2)
    return mean, var


def deviance_moments(mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected deviance and its variance per spectrum for Poisson means ``mu`` (n, m)."""
    mean, var = _moment_table()
    m = np.clip(np.asarray(mu, dtype=np.float64), 1e-300, None)
    lm = np.log(m)
    # Linear interpolation on the uniform grid, the cell found by arithmetic, each table read
    # with ``take`` and summed at once: np.interp's binary search, or fancy-indexing one
    # (cells, 4) table, took 3-4x longer than all of this (measured on 20,000 x 128 bins).
    t = lm - _LOG_MU[0]
    t *= 1.0 / (_LOG_MU[1] - _LOG_MU[0])
    np.clip(t, 0.0, _LOG_MU.size - 1, out=t)
    j = np.minimum(t.astype(np.intp), _LOG_MU.size - 2)
    t -= j
    e = mean.take(j).sum(axis=-1) + np.einsum("...i,...i->...", t, np.diff(mean).take(j))
    v = var.take(j).sum(axis=-1) + np.einsum("...i,...i->...", t, np.diff(var).take(j))
    # Bins off the table (expecting < 1e-6 or > 1e4 counts) are rare: their spectra again,
    # bin by bin.
    off = ((lm < _LOG_MU[0]) | (lm > _LOG_MU[-1])).any(axis=-1)
    if off.any():
        e[off], v[off] = _moments_off_table(m[off], lm[off])
    return e, v


def _moments_off_table(m: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`deviance_moments` bin by bin, with the limits off the table: a bin expecting
    < 1e-6 counts adds ~2 mu to the deviance, past 1e4 counts it is chi-square(1): 1 +- sqrt(2).
    """
    mean, var = _moment_table()
    lo, hi = lm < _LOG_MU[0], lm > _LOG_MU[-1]
    e = np.where(lo, 2 * m, np.where(hi, 1.0, np.interp(lm, _LOG_MU, mean)))
    v = np.where(lo, 4 * m * (1 - lm) ** 2, np.where(hi, 2.0, np.interp(lm, _LOG_MU, var)))
    return e.sum(axis=-1), v.sum(axis=-1)


def deviance_zscore(counts: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The deviance of ``counts`` given ``mu`` and its z-score against the Poisson
    expectation for ``mu``: (deviance - E) / sqrt(Var), per spectrum."""
    from xlatent.model.preprocess import poisson_deviance

    dev = poisson_deviance(counts, mu)
    e, v = deviance_moments(mu)
    return dev, (dev - e) / np.sqrt(np.maximum(v, 1e-12))


def resampled_set(s: SpectrumSet, counts: np.ndarray, n_draws: int) -> SpectrumSet:
    """A set of ``len(s) * n_draws`` rows: each spectrum's instrument arrays and pile-up
    columns repeated ``n_draws`` times (spectrum-major) with ``counts`` (n * n_draws, m)."""
    rep = np.repeat(np.arange(len(s)), n_draws)
    meta = pd.DataFrame({"spec_id": np.arange(rep.size).astype(str)})
    # What the model reads of the meta besides the arrays: how each spectrum can pile.
    known = [c for c in PILEUP_COLUMNS if c in meta_names_of(s)]
    if known:
        for col, values in meta_of(s, known).items():
            meta[col] = values.to_numpy()[rep]
    return SpectrumSet(
        grid=s.grid, counts=counts, background=s.background[rep],
        exposure_s=s.exposure_s[rep], effective_area_cm2=s.effective_area_cm2[rep], meta=meta,
    )  # fmt: skip


def _draw(
    rng: np.random.Generator, s: SpectrumSet, mu: np.ndarray, n_draws: int, method: str
) -> np.ndarray:
    """``n_draws`` Poisson redraws per spectrum (spectrum-major), of ``mu`` (parametric) or
    of the observed counts (``method="observed"``)."""
    lam = mu if method == "parametric" else s.counts
    return rng.poisson(np.repeat(lam, n_draws, axis=0)).astype(np.float64)


def encode_and_reconstruct(model: Any, s: SpectrumSet) -> tuple[np.ndarray, np.ndarray]:
    """(latents, reconstruction) of ``s``: the model's single-pass
    ``encode_and_reconstruct`` when it has one, else ``transform`` and ``reconstruct``."""
    both = getattr(model, "encode_and_reconstruct", None)
    if both is not None:
        return both(s)
    return model.transform(s), model.reconstruct(s)


def encode_with_errors(
    model: Any,
    s: SpectrumSet,
    n_draws: int = DEFAULT_N_DRAWS,
    *,
    seed: int = 0,
    scale: float | None = None,
    method: str = "parametric",
) -> Encoded:
    """Latents, their errors (``n_draws`` Poisson redraws each; none when 0), and the
    deviance of each spectrum's counts against its reconstruction with its z-score.

    ``model``: a fitted latent model (``transform`` and ``reconstruct``, or
    ``encode_and_reconstruct``: one encoder pass for both), with its
    ``calibration_`` when it has one (error scale, OOD score and threshold). ``scale``
    multiplies the raw spread (default: the calibration's, else 1). ``method``: ``"parametric"``
    (Poisson(N p + B), default) or ``"observed"`` (Poisson(counts)). Reproducible from
    ``seed``.
    """
    if not isinstance(n_draws, (int, np.integer)) or isinstance(n_draws, bool) or n_draws < 0:
        raise ValueError(f"n_draws must be an integer >= 0, not {n_draws!r}")
    if n_draws == 1:
        raise ValueError("n_draws = 1 gives no spread; use 0 (no errors) or >= 2")
    if method not in ("parametric", "observed"):
        raise ValueError(f"method must be 'parametric' or 'observed', not {method!r}")
    cal = getattr(model, "calibration_", None)
    if scale is None:
        scale = cal.error_scale if cal is not None else 1.0
    rng = np.random.default_rng([seed, 0xE77])
    step = max(1, CHUNK_ROWS // max(n_draws, 1))
    zs, errs, devs, dzs = [], [], [], []
    for k in range(0, len(s), step):
        part = s[k : k + step] if len(s) > step else s
        z, recon = encode_and_reconstruct(model, part)
        mu = recon + part.background
        dev, dz = deviance_zscore(part.counts, mu)
        zs.append(z)
        devs.append(dev)
        dzs.append(dz)
        if n_draws:
            draws = _draw(rng, part, mu, n_draws, method)
            zk = model.transform(resampled_set(part, draws, n_draws))
            zk = zk.reshape(len(part), n_draws, -1)
            errs.append(scale * zk.std(axis=1, ddof=1))
    d = getattr(model, "latent_dim", zs[0].shape[1] if zs else 0)
    z = np.concatenate(zs) if zs else np.zeros((0, d))
    dz = np.concatenate(dzs) if dzs else np.zeros(0)
    score, flag = dz, None
    if cal is not None and len(z):
        score = cal.ood_score(z, dz, s.counts.sum(axis=1))
        flag = score > cal.threshold
    elif cal is not None:
        flag = np.zeros(0, dtype=bool)
    return Encoded(
        latents=z,
        errors=(np.concatenate(errs) if errs else np.zeros((0, d))) if n_draws else None,
        deviance=np.concatenate(devs) if devs else np.zeros(0),
        deviance_z=dz, ood_score=score, ood_flag=flag,
    )  # fmt: skip
