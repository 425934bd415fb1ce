"""Reconstruction quality against the noiseless truth.

For each model (the latent model and the PCA baseline), the Poisson deviance of the observed
source-region counts given *reconstruction + scaled background* is compared with the deviance
given *true expected counts + background*. The ratio of the means is ~1 for a model that
reconstructs as well as the truth explains the data (Poisson noise only); above 1 means
missing structure, below 1 means fitting noise. Measured on the held-out split.

Every ratio comes with a 95% bootstrap interval (``*_ci95``): the group's spectra resampled
with replacement, numerator and denominator from the same draw (the ratio is of two paired
means). A decile of 400 spectra whose brightest few dominate its mean is uncertain by several
hundredths, so "ratio <= 1.05" is read against the interval, not the point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlatent.analysis._common import Context, save_figure, subsample
from xlatent.core.vocabulary import CLASSES

#: Response-type columns of ``meta`` over which the deviance ratio is also reported.
RESPONSE_COLUMNS = ("chip_type", "detector")


#: Bootstrap replicates behind each ratio's interval.
N_BOOT = 1000


def _ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    if num.size == 0 or den.mean() <= 0:
        return None
    return float(num.mean() / den.mean())


def ratio_ci95(
    num: np.ndarray, den: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT
) -> list[float] | None:
    """95% bootstrap interval of ``mean(num) / mean(den)`` (rows resampled in pairs); None
    for fewer than 2 rows or a non-positive denominator."""
    if num.size < 2 or den.mean() <= 0:
        return None
    idx = rng.integers(0, num.size, size=(n_boot, num.size))
    d = den[idx].mean(axis=1)
    boot = num[idx].mean(axis=1) / np.where(d > 0, d, np.nan)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return [float(lo), float(hi)]


def deviance_summary(
    dev: np.ndarray, dev_true: np.ndarray | None, labels: np.ndarray, counts_b: np.ndarray,
    n_bins: int, groups: dict[str, np.ndarray] | None = None, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Mean deviance, and the ratio to the truth's overall, per class, per counts decile and
    (``per_response``) per value of each array in ``groups`` (e.g. chip_type, detector), each
    with its 95% bootstrap interval (``deviance_ratio_ci95``, ``per_class_ci95``, a decile's
    ``ratio_ci95``, ``per_response_ci95``; draws seeded by ``seed``)."""
    out: dict[str, Any] = {
        "n": int(dev.size),
        "mean_deviance": float(dev.mean()),
        "mean_deviance_per_bin": float(dev.mean() / n_bins),
    }
    if dev_true is None:
        return out
    rng = np.random.default_rng(seed)

    def ci(mask: np.ndarray) -> list[float] | None:
        return ratio_ci95(dev[mask], dev_true[mask], rng)

    out["deviance_ratio"] = _ratio(dev, dev_true)
    out["deviance_ratio_ci95"] = ci(np.ones(dev.size, dtype=bool))
    classes = [c for c in CLASSES if (labels == c).any()]
    out["per_class"] = {c: _ratio(dev[labels == c], dev_true[labels == c]) for c in classes}
    out["per_class_ci95"] = {c: ci(labels == c) for c in classes}
    edges = np.unique(np.nanquantile(counts_b, np.linspace(0, 1, 11)))
    dec = np.clip(np.searchsorted(edges, counts_b, side="right") - 1, 0, max(edges.size - 2, 0))
    out["per_counts_decile"] = [
        {"counts_lo": float(edges[i]), "counts_hi": float(edges[i + 1]),
         "ratio": _ratio(dev[dec == i], dev_true[dec == i]), "ratio_ci95": ci(dec == i)}
        for i in range(edges.size - 1)
    ]  # fmt: skip
    values = {col: [v for v in np.unique(g) if v != ""] for col, g in (groups or {}).items()}
    out["per_response"] = {
        col: {str(v): _ratio(dev[g == v], dev_true[g == v]) for v in values[col]}
        for col, g in (groups or {}).items()
    }
    out["per_response_ci95"] = {
        col: {str(v): ci(g == v) for v in values[col]} for col, g in (groups or {}).items()
    }
    return out


def _example_figure(s: Any, recons: dict[str, np.ndarray], rows: np.ndarray, ctx: Context) -> None:
    import matplotlib.pyplot as plt

    labels = s.meta["source_class"].fillna("").astype(str).to_numpy()
    picks: list[int] = []
    for c in CLASSES:  # one spectrum per class where possible, then any
        hit = rows[labels[rows] == c]
        if hit.size:
            picks.append(int(hit[0]))
    picks += [int(r) for r in rows if r not in picks]
    picks = picks[:6]
    if not picks:
        return
    e, w = s.grid.centers_kev, s.grid.widths_kev
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), squeeze=False)
    for ax, i in zip(axes.ravel(), picks, strict=False):
        bkg = s.background[i]
        ax.step(e, s.counts[i] / w, where="mid", color="0.6", lw=0.8, label="data")
        if s.expected_counts is not None:
            ax.plot(e, (s.expected_counts[i] + bkg) / w, "k-", lw=1.4, label="truth")
        for (name, rec), col in zip(recons.items(), ("C3", "C0"), strict=False):
            ax.plot(e, (rec[i] + bkg) / w, color=col, lw=1.1, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([0.5, 1, 2, 5], ["0.5", "1", "2", "5"])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_ylim(bottom=max(1e-1, ax.get_ylim()[0]))
        ax.set_title(f"{s.meta['spec_id'].iloc[i]} {labels[i]} "
                     f"({s.counts[i].sum():.0f} counts)", fontsize=8)  # fmt: skip
        ax.set_xlabel("energy (keV)", fontsize=8)
    for ax in axes.ravel()[len(picks) :]:
        ax.axis("off")
    axes[0][0].set_ylabel("counts / keV")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(
        ctx, fig, "reconstruction_examples.png",
        "Held-out spectra (one per class where available): data, noiseless truth and the "
        "reconstructions (+ background) of the latent model and the PCA baseline.",
        "reconstruction",
    )  # fmt: skip


def _decile_figure(res: dict[str, Any], ctx: Context) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, r in res.items():
        dec = r.get("per_counts_decile")
        if not dec:
            continue
        x = [np.sqrt(max(d["counts_lo"], 1.0) * max(d["counts_hi"], 1.0)) for d in dec]
        y = np.array([d["ratio"] if d["ratio"] is not None else np.nan for d in dec])
        ci = np.array([d.get("ratio_ci95") or [np.nan, np.nan] for d in dec], dtype=float)
        ax.errorbar(x, y, yerr=np.abs(np.stack([y - ci[:, 0], ci[:, 1] - y])), fmt="o-",
                    capsize=2, label=f"{name} (all: {r['deviance_ratio']:.3f})")  # fmt: skip
    ax.axhline(1.0, color="k", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("broad-band net counts (decile centre)")
    ax.set_ylabel("deviance / deviance of truth")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(
        ctx, fig, "reconstruction_deviance.png",
        "Mean Poisson deviance of the reconstructions relative to that of the noiseless truth, "
        "per decile of broad-band net counts, with 95% bootstrap intervals (1 = as good as "
        "the truth; held-out spectra).",
        "reconstruction",
    )  # fmt: skip


def run(s: Any, models: dict[str, Any], ctx: Context, counts_b: np.ndarray) -> dict[str, Any]:
    """``reconstruction.<name>`` metrics for every model with ``.reconstruct`` (rows of ``s``
    aligned with ``ctx.meta``)."""
    from xlatent.model import poisson_deviance

    usable = {k: m for k, m in models.items() if m is not None and hasattr(m, "reconstruct")}
    for k in set(models) - set(usable):
        ctx.skip(f"reconstruction.{k}", "no model object with .reconstruct() was given")
    if not usable:
        return {}
    rows = np.flatnonzero(~ctx.is_train)
    if rows.size == 0:
        rows = np.arange(len(s))
    rows = subsample(rows, 4 * ctx.max_points, ctx.rng(29))
    sub = s[rows]
    labels = ctx.labels()[rows]
    groups = {c: ctx.meta[c].fillna("").astype(str).to_numpy()[rows]
              for c in RESPONSE_COLUMNS if c in ctx.meta}  # fmt: skip
    dev_true = None
    if sub.expected_counts is not None:
        dev_true = poisson_deviance(sub.counts, sub.expected_counts + sub.background)
    else:
        ctx.skip("reconstruction.deviance_ratio", "no expected_counts (real data): "
                 "mean deviance only, no ratio to the truth")  # fmt: skip
    out: dict[str, Any] = {}
    recons: dict[str, np.ndarray] = {}
    for name, model in usable.items():
        try:
            rec = np.asarray(model.reconstruct(sub), dtype=np.float64)
        except Exception as exc:  # one model failing must not hide the other's result
            ctx.skip(f"reconstruction.{name}", f"{type(exc).__name__}: {exc}")
            continue
        dev = poisson_deviance(sub.counts, rec + sub.background)
        out[name] = deviance_summary(dev, dev_true, labels, counts_b[rows], s.grid.n_bins,
                                     groups, seed=ctx.seed)  # fmt: skip
        recons[name] = rec
    if dev_true is not None:
        out["truth_mean_deviance_per_bin"] = float(dev_true.mean() / s.grid.n_bins)
    out["split"] = "held-out test rows" if (~ctx.is_train).any() else "all rows"
    if recons:
        _example_figure(sub, recons, np.arange(len(sub)), ctx)
        if dev_true is not None:
            _decile_figure({k: v for k, v in out.items() if isinstance(v, dict)}, ctx)
    return out
