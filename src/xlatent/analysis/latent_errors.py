"""``latent_errors`` and ``ood`` of metrics.json: are the latent errors calibrated, and how
many in-distribution spectra does the OOD threshold flag?

Calibration: the scored (test) spectra and an independent Poisson redraw of the same sources
(a *noise twin*, given by the caller: only a simulated set has the truth to redraw from) are
encoded with their errors; per spectrum and dimension r = (z1 - z2) / sqrt(e1^2 + e2^2), and
``coverage_68`` is the share with |r| < 1 (0.68 when the errors are right; the target is
0.60-0.76), overall, per latent dimension and per count quintile.

OOD: the share of scored spectra with ``ood_flag`` (the model's threshold flags 1% of its
reference spectra: validation split and training rows left out of the density mixture), per
count quintile, and the most unusual spectra for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xlatent.analysis._common import Context

#: Scored spectra encoded with errors (each x 2 sets x (n_draws + 1) encodes): bounds the time.
MAX_CALIBRATION_SPECTRA = 1000
#: Spectra listed under ``ood.top`` (the report's table).
N_TOP = 15
COVERAGE_TARGET = (0.60, 0.76)


def _quintiles(counts: np.ndarray) -> tuple[np.ndarray, list[list[float]]]:
    """Count quintile of each spectrum and each quintile's [min, max] counts."""
    edges = np.quantile(counts, [0.2, 0.4, 0.6, 0.8]) if len(counts) else np.zeros(4)
    q = np.digitize(counts, edges)
    ranges = [[float(counts[q == i].min()), float(counts[q == i].max())] if (q == i).any()
              else [np.nan, np.nan] for i in range(5)]  # fmt: skip
    return q, ranges


def coverage(model: Any, s: Any, twin: Any, n_draws: int = 16, seed: int = 0) -> dict[str, Any]:
    """Coverage of the 68% interval from ``s`` and its noise twin ``twin`` (same rows)."""
    a = model.encode(s, n_draws, seed=seed)
    b = model.encode(twin, n_draws, seed=seed + 1)
    r = np.abs(a.latents - b.latents) / np.sqrt(a.errors**2 + b.errors**2 + 1e-300)
    inside = r < 1
    q, ranges = _quintiles(s.counts.sum(axis=1))
    cal = getattr(model, "calibration_", None)
    return {
        "coverage_68": float(inside.mean()),
        "target": list(COVERAGE_TARGET),
        "in_target": bool(COVERAGE_TARGET[0] <= inside.mean() <= COVERAGE_TARGET[1]),
        "per_dimension": [float(v) for v in inside.mean(axis=0)],
        "per_count_quintile": [
            float(inside[q == i].mean()) if (q == i).any() else None for i in range(5)
        ],  # fmt: skip
        "count_quintile_ranges": ranges,
        "median_error": [float(v) for v in np.median(a.errors, axis=0)],
        "n_spectra": len(s),
        "n_draws": n_draws,
        "error_scale": cal.error_scale if cal is not None else 1.0,
        "calibrated": cal is not None,
        "method": "the scored spectra and a Poisson twin of the same sources; r = (z1 - z2) / "
        "sqrt(e1^2 + e2^2) per spectrum and dimension; coverage_68 = share of |r| < 1",
    }


def ood_summary(model: Any, s: Any, meta: Any, scored: np.ndarray) -> dict[str, Any]:
    """Flag rate of the model's OOD threshold on the scored spectra, and the top of the list."""
    idx = np.flatnonzero(scored)
    sub = s[idx]
    enc = model.encode(sub, 0)
    cal = getattr(model, "calibration_", None)
    counts = sub.counts.sum(axis=1)
    order = np.argsort(-enc.ood_score)[:N_TOP]
    m = meta.iloc[idx].reset_index(drop=True)
    cls = m["source_class"].astype(str) if "source_class" in m else None
    top = [{"spec_id": str(m["spec_id"].iloc[i]),
            "source_class": str(cls.iloc[i]) if cls is not None else "",
            "counts": float(counts[i]), "ood_score": float(enc.ood_score[i]),
            "ood_flag": bool(enc.ood_flag[i]) if enc.ood_flag is not None else None}
           for i in order]  # fmt: skip
    out: dict[str, Any] = {"n_scored": int(idx.size), "calibrated": cal is not None, "top": top}
    if cal is None:
        out["note"] = "the model has no calibration.json: no threshold, ood_score = deviance z"
        return out
    q, ranges = _quintiles(counts)
    flag = enc.ood_flag
    out.update({
        "threshold": cal.threshold,
        "target_flag_rate": cal.flag_fraction,
        "flag_rate": float(flag.mean()) if flag.size else None,
        "n_flagged": int(flag.sum()),
        "flag_rate_per_count_quintile": [float(flag[q == i].mean()) if (q == i).any() else None
                                         for i in range(5)],  # fmt: skip
        "count_quintile_ranges": ranges,
    })  # fmt: skip
    return out


def run(
    model: Any,
    s: Any,
    ctx: Context,
    twin_of: Callable[[Any], Any] | None,
    guarded: Any,
    metrics: dict[str, Any],
) -> None:
    """Add ``latent_errors`` and ``ood`` to ``metrics``: nothing for a model that cannot
    encode with errors (none given, or a stand-in), and ``latent_errors`` skipped, with the
    reason, when a twin was asked for and cannot be had."""
    if model is None or not hasattr(model, "encode"):
        if twin_of is not None:
            ctx.skip("latent_errors", "no model object with .encode()")
        return
    scored = ~ctx.is_train
    with guarded("ood"):
        metrics["ood"] = ood_summary(model, s, ctx.meta, scored)
    twin = None
    if twin_of is not None:
        rng = np.random.default_rng([ctx.seed, 0x7C])
        idx = np.flatnonzero(scored)
        idx = np.sort(rng.permutation(idx)[:MAX_CALIBRATION_SPECTRA])
        twin = twin_of(s[idx])
    if twin is None:
        ctx.skip("latent_errors", "no noise twin of the set (it is not simulated)")
        return
    with guarded("latent_errors"):
        metrics["latent_errors"] = coverage(model, s[idx], twin, seed=ctx.seed)
