"""The clustering protocols run side by side, repeated, with intervals and paired differences.

See :mod:`xlatent.analysis.clustering` for the protocols (``k8``, ``k8_majority``, ``tuned``)
and :mod:`xlatent.analysis.uncertainty` for the intervals. :func:`run` produces the
``clustering``, ``probe``, ``differences`` and ``uncertainty`` entries of metrics.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xlatent.analysis._common import Context, make_split, save_figure, subsample
from xlatent.analysis.clustering import (
    TASKS,
    apply_map,
    binary_labels,
    cluster_assignments,
    cluster_feature_set,
    learn_map,
    rep_rng,
)
from xlatent.analysis.features import FeatureSet
from xlatent.analysis.probe import probe_feature_set
from xlatent.analysis.uncertainty import N_BOOT, Scored, summarise, summarise_difference
from xlatent.core.vocabulary import CLASSES

#: Repeats (clustering seeds; splits where not fixed) behind every clustering figure.
N_REPEATS = 5


PROTOCOLS = ("k8", "k8_majority", "tuned")


#: Sets clustered once (bootstrap interval only): the oracle reads the class off the
#: simulator's model family, its figure needs no repeats and the time goes to the others.
SINGLE_REPEAT = ("oracle",)


#: Paired differences reported for every protocol (and the probe, with PROBE_PAIRS).
#: Like for like: the latents (shape) against the ratios alone, and latents + flux against
#: ratios + flux (shape and brightness); the rest for context.
DIFF_PAIRS = (("latent", "hardness"), ("latent", "hardness_flux"), ("latent", "hardness_ratios"),
              ("latent_flux", "hardness_flux"), ("latent", "pca"))  # fmt: skip


PROBE_PAIRS = (*DIFF_PAIRS, ("latent", "spectrum"), ("noiseless", "latent"),
               ("noiseless", "spectrum"))  # fmt: skip


def k8_clusters(
    fs: FeatureSet, ctx: Context, is_train: np.ndarray, rep: int = 0, k: int = 8
) -> np.ndarray:
    """The ``k8`` protocol's clustering: k-means (k = 8) fitted on (at most max_points)
    training rows, every row assigned."""
    fit_idx = subsample(np.flatnonzero(is_train), ctx.max_points, rep_rng(ctx, 19, rep))
    return cluster_assignments(fs.X, fit_idx, "kmeans", k, ctx.seed + rep)


def scored_predictions(
    clusters: np.ndarray, labels: np.ndarray, is_train: np.ndarray, rule: str
) -> dict[str, Scored | None]:
    """Test-row correctness of a clustering under a map ``rule``, for both tasks."""
    lab = labels != ""
    tr, te = lab & is_train, lab & ~is_train
    out: dict[str, Scored | None] = {"bacc_8class": None, "bacc_agn_vs_compact": None}
    if np.unique(labels[tr]).size >= 2 and te.any():
        mapping, fb = learn_map(clusters[tr], labels[tr], rule)
        pred = apply_map(clusters[te], mapping, fb)
        out["bacc_8class"] = Scored(labels[te], (pred == labels[te]).astype(float),
                                    np.flatnonzero(te))  # fmt: skip
    mask, binlab = binary_labels(labels)
    btr, bte = mask & tr, mask & te
    if np.unique(binlab[btr]).size == 2 and np.unique(binlab[bte]).size == 2:
        bmap, bfb = learn_map(clusters[btr], binlab[btr], rule)
        pred = apply_map(clusters[bte], bmap, bfb)
        out["bacc_agn_vs_compact"] = Scored(binlab[bte], (pred == binlab[bte]).astype(float),
                                            np.flatnonzero(bte))  # fmt: skip
    return out


def repeat_splits(ctx: Context, n_repeats: int) -> tuple[list[np.ndarray], str]:
    """The training masks of the repeats and how they were made.

    A ``split`` column in meta (the model's own training split) is kept for every repeat;
    otherwise repeat 0 is ``ctx.is_train`` and each later one a fresh stratified split.
    """
    meta = ctx.meta
    if "split" in meta:
        split = meta["split"].astype(str).str.lower().to_numpy()
        if (split == "train").any() and (split == "test").any():
            return [ctx.is_train] * n_repeats, "fixed: the set's split column, every repeat"
    masks = [ctx.is_train]
    masks += [make_split(meta, ctx.seed + 100_003 * r) for r in range(1, n_repeats)]
    return masks, "stratified 70/30, drawn afresh for every repeat"


def _summaries(reps: list[dict[str, Scored | None]], seed: int) -> dict[str, Any]:
    """``{task, task_ci95, task_reps}`` for both tasks from a list of per-repeat predictions."""
    out: dict[str, Any] = {}
    for t, task in enumerate(TASKS):
        s = summarise([r[task] for r in reps if r], N_BOOT, [seed, 41, t])
        out[task] = s["mean"]
        out[f"{task}_ci95"] = s["ci95"]
        out[f"{task}_reps"] = s["reps"]
    return out


def _differences(
    scored: dict[str, list[dict[str, Scored | None]]],
    pairs: tuple[tuple[str, str], ...],
    seed: int,
) -> dict[str, Any]:
    return {f"{a}_minus_{b}": _difference(scored[a], scored[b], seed)
            for a, b in pairs if a in scored and b in scored}  # fmt: skip


def _difference(
    a: list[dict[str, Scored | None]], b: list[dict[str, Scored | None]], seed: int
) -> dict[str, Any]:
    """Paired ``a - b`` for both tasks (same bootstrap seeds as :func:`_summaries`)."""
    d: dict[str, Any] = {}
    for t, task in enumerate(TASKS):
        ra = [r.get(task) if r else None for r in a]
        rb = [r.get(task) if r else None for r in b]
        s = summarise_difference(ra, rb, N_BOOT, [seed, 41, t])
        d[task], d[f"{task}_ci95"] = s["mean"], s["ci95"]
    return d


def plot_confusions(results: dict[str, dict[str, Any]], ctx: Context) -> None:
    """Row-normalised confusion matrices of each feature set's headline clustering."""
    import matplotlib.pyplot as plt

    names = [n for n, r in results.items() if r]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        r = results[name]
        m = np.asarray(r["methods"][r["method"]]["confusion"]["counts"], dtype=float)
        norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(CLASSES)):
            for j in range(len(CLASSES)):
                if m[i].sum():
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=60, fontsize=7)
        ax.set_yticks(range(len(CLASSES)), CLASSES, fontsize=7)
        ax.set_xlabel("predicted (cluster map)")
        b8 = r["methods"][r["method"]]["bacc_8class"]
        ax.set_title(f"{name}: {r['method']}, {r['n_clusters']} clusters\n"
                     f"bacc {b8:.2f} (repeat 0)", fontsize=9)  # fmt: skip
    axes[0][0].set_ylabel("true class")
    fig.tight_layout()
    save_figure(
        ctx, fig, "confusion_clustering.png",
        "Held-out confusion matrices (row-normalised recall) of the cluster->class map, one "
        "panel per feature set, for the clustering method chosen on the training split "
        "(tuned protocol, first repeat).",
        "clustering",
    )  # fmt: skip


def run(
    feature_sets: dict[str, FeatureSet], ctx: Context, n_repeats: int = N_REPEATS
) -> dict[str, Any]:
    """``clustering``, ``probe`` and ``differences`` metrics for every feature set.

    ``clustering.<set>.protocols.<k8|k8_majority|tuned>.bacc_8class`` (mean over repeats)
    with ``..._ci95`` and ``..._reps``, likewise ``bacc_agn_vs_compact``; the flat
    ``clustering.<set>.bacc_8class`` / ``bacc_agn_vs_compact`` are the ``tuned`` protocol's
    (compatibility); ``methods`` details repeat 0. ``differences.<protocol>.<a>_minus_<b>``:
    paired differences with intervals (``protocol`` also ``probe``).
    """
    labels = ctx.labels()
    n_tr = np.unique(labels[(labels != "") & ctx.is_train]).size
    n_te = np.unique(labels[(labels != "") & ~ctx.is_train]).size
    if n_tr < 2 or n_te < 2:
        ctx.skip("clustering", f"needs >= 2 labelled classes in train and test (have {n_tr}, "
                 f"{n_te}); source_class is empty for most real sources")  # fmt: skip
        return {"clustering": {}, "probe": {}}
    n_repeats = max(1, int(n_repeats))
    compare = {name: fs for name, fs in feature_sets.items() if fs.role == "compare"}
    splits, split_how = repeat_splits(ctx, n_repeats)
    scored: dict[str, dict[str, list]] = {p: {n: [] for n in compare} for p in PROTOCOLS}
    clustering: dict[str, Any] = {}
    chosen: dict[str, list] = {n: [] for n in compare}
    for rep, is_train in enumerate(splits):
        for name, fs in compare.items():
            if rep > 0 and name in SINGLE_REPEAT:
                continue
            res = cluster_feature_set(fs, ctx, is_train=is_train, rep=rep)
            clusters = res.pop("_clusters", None)
            if rep == 0:
                clustering[name] = res
            if clusters is not None:
                scored["tuned"][name].append(scored_predictions(clusters, labels, is_train,
                                                                "prior"))  # fmt: skip
                chosen[name].append([res["method"], res["param"]])
            k8 = k8_clusters(fs, ctx, is_train, rep)
            scored["k8"][name].append(scored_predictions(k8, labels, is_train, "prior"))
            scored["k8_majority"][name].append(scored_predictions(k8, labels, is_train,
                                                                  "majority"))  # fmt: skip
    for name in compare:
        entry = clustering.setdefault(name, {})
        protocols = {p: _summaries(scored[p][name], ctx.seed) for p in PROTOCOLS}
        protocols["tuned"]["chosen_per_repeat"] = chosen[name]
        entry["protocols"] = protocols
        # Compatibility: the flat keys are the tuned protocol's (now the mean over repeats).
        entry["bacc_8class"] = protocols["tuned"]["bacc_8class"]
        entry["bacc_agn_vs_compact"] = protocols["tuned"]["bacc_agn_vs_compact"]
    probe = {name: probe_feature_set(fs, ctx) for name, fs in feature_sets.items()}
    probe_scored = {name: [p.pop("_scored")] for name, p in probe.items()}
    plot_confusions({n: r for n, r in clustering.items() if r.get("methods")}, ctx)
    differences = {p: _differences(scored[p], DIFF_PAIRS, ctx.seed) for p in PROTOCOLS}
    differences["probe"] = _differences(probe_scored, PROBE_PAIRS, ctx.seed)
    # The protocol effect on one feature set: same repeats, splits and test rows.
    differences["tuned_minus_k8"] = {n: _difference(scored["tuned"][n], scored["k8"][n], ctx.seed)
                                     for n in compare if scored["tuned"][n]}  # fmt: skip
    clustering["chance_8class"] = 1.0 / n_te
    clustering["protocol"] = (
        "k8: k-means k=8 on the standardised features fitted on the training split, "
        "cluster->class map argmax n(k,c)/n(c) learned on labelled training rows "
        "(k8_majority: plain majority vote); tuned: k / min_cluster_size and the method "
        "(k-means, GMM, HDBSCAN) chosen on training rows only (half/half inner split), same "
        "map; balanced accuracy on held-out test rows"
    )
    n_test = [int(((labels != "") & ~m).sum()) for m in splits]
    uncertainty = {
        "n_repeats": n_repeats,
        "split": split_how,
        "n_test_labelled": n_test,
        "n_boot": N_BOOT,
        "clustering": "mean over repeats; 95% interval: 2.5-97.5 percentiles of a "
        "class-stratified bootstrap of the test rows, pooled over repeats",
        "probe": "one 5-fold cross-validation; 95% interval: class-stratified bootstrap of "
        "the out-of-fold predictions (refitting variation not included)",
        "differences": "paired: same repeats, splits and bootstrap rows for both sets",
        "single_repeat": [n for n in compare if n in SINGLE_REPEAT],
    }
    return {"clustering": clustering, "probe": probe, "differences": differences,
            "uncertainty": uncertainty}  # fmt: skip
