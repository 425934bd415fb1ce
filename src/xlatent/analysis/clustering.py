"""Unsupervised class recovery, as in the reference study, plus a supervised probe.

Two clustering protocols are run on every feature set, side by side:

``k8`` (like the reference study): k-means with k = 8 (the number of classes) on the
standardised features, fitted on the training rows; the prior-corrected cluster->class map
(below) learned on the labelled training rows; balanced accuracy on the held-out test rows.
``k8_majority`` is the same clustering with a plain majority-vote map, so a reader sees how
much of the figure the map itself makes.

``tuned`` (xlatent's own): k-means, Gaussian mixture and HDBSCAN; the number of clusters (k in
8..32; HDBSCAN's minimum cluster size) and the method are chosen on the training split only
(the labelled training rows are halved, the map learned on one half and scored on the other);
the final map is learned on all labelled training rows and scored on the test rows. It has
more freedom than the study's protocol: it is not a like-for-like comparison with it.

Both report the 8-class balanced accuracy and AGN versus compact objects (HMXB, LMXB, NS; rows
of those classes only, map re-learned for the two groups).

Cluster->class rule: ``argmax_c n(cluster, c) / n(c)`` -- the class most *over-represented*
in the cluster relative to its prior. Balanced accuracy weights every class equally, and a
majority-vote map would send almost every cluster to AGN (half the labelled CSC sources).

Uncertainty (:mod:`xlatent.analysis.uncertainty`): each protocol is repeated ``n_repeats``
times with other clustering seeds and fit subsamples, and -- when the split is not fixed by
the data (a ``split`` column: the model's own training split, kept because the model saw its
training spectra) -- on a freshly drawn stratified split. The figure is the mean over repeats,
the interval the 2.5-97.5% percentiles of a class-stratified bootstrap of the test rows pooled
over the repeats. Differences between feature sets (``differences.<protocol>.<a>_minus_<b>``)
are paired: same repeats, same splits, same bootstrap rows.

The probe (``probe.<features>``) is a supervised upper reference: a histogram gradient-boosted
classifier with class-balanced weights, 5-fold stratified cross-validation on the labelled rows
(the same rows and folds for every feature set); its interval is a class-stratified bootstrap
of the out-of-fold predictions (repeating the cross-validation would cost five times as much;
the interval therefore omits the variation from refitting).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, make_split, save_figure, single_thread, subsample
from xlatent.analysis.features import FeatureSet
from xlatent.analysis.uncertainty import N_BOOT, Scored, summarise, summarise_difference
from xlatent.core.split import stratified_pick
from xlatent.core.vocabulary import CLASSES, COMPACT

K_GRID = (8, 12, 16, 24, 32)
#: Repeats (clustering seeds; splits where not fixed) behind every clustering figure.
N_REPEATS = 5
PROTOCOLS = ("k8", "k8_majority", "tuned")
#: Sets clustered once (bootstrap interval only): the oracle reads the class off the
#: simulator's model family, its figure needs no repeats and the time goes to the others.
SINGLE_REPEAT = ("oracle",)
#: Paired differences reported for every protocol (and the probe, with PROBE_PAIRS).
DIFF_PAIRS = (("latent", "hardness"), ("latent", "pca"))
PROBE_PAIRS = (*DIFF_PAIRS, ("latent", "spectrum"), ("noiseless", "latent"),
               ("noiseless", "spectrum"))  # fmt: skip
METHODS = ("kmeans", "gmm", "hdbscan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (NaN if it is empty)."""
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    classes = np.unique(y_true)
    if classes.size == 0:
        return float("nan")
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def learn_map(
    clusters: np.ndarray, labels: np.ndarray, rule: str = "prior"
) -> tuple[dict[int, Any], Any]:
    """cluster -> class from labelled rows; ``rule`` is ``"prior"`` or ``"majority"``.

    Returns the map and the fallback class (the most common label) for clusters that had no
    labelled member.
    """
    classes, y = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    ks, c = np.unique(clusters, return_inverse=True)
    table = np.zeros((ks.size, classes.size))
    np.add.at(table, (c, y), 1.0)
    if rule == "prior":
        table = table / np.maximum(table.sum(axis=0, keepdims=True), 1.0)
    elif rule != "majority":
        raise ValueError(f"rule must be 'prior' or 'majority', not {rule!r}")
    mapping = {int(k): classes[int(np.argmax(row))] for k, row in zip(ks, table, strict=True)}
    fallback = classes[int(np.argmax(np.bincount(y)))]
    return mapping, fallback


def apply_map(clusters: np.ndarray, mapping: dict[int, Any], fallback: Any) -> np.ndarray:
    """Predicted class per row from its cluster."""
    return np.array([mapping.get(int(k), fallback) for k in clusters], dtype=object)


def _kmeans(x: np.ndarray, k: int, seed: int) -> Any:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=2, random_state=seed).fit(x)


def _gmm(x: np.ndarray, k: int, seed: int) -> Any:
    from sklearn.mixture import GaussianMixture

    # reg_covar: indicator columns and discrete hardness values make singular covariances.
    return GaussianMixture(k, covariance_type="full", reg_covar=1e-3, max_iter=200,
                           random_state=seed).fit(x)  # fmt: skip


def _hdbscan_assign(x_fit: np.ndarray, x_all: np.ndarray, min_size: int) -> np.ndarray | None:
    from sklearn.cluster import HDBSCAN
    from sklearn.neighbors import KNeighborsClassifier

    lab = HDBSCAN(min_cluster_size=min_size, min_samples=5, copy=True).fit_predict(x_fit)
    core = lab >= 0
    if np.unique(lab[core]).size < 2:
        return None
    # HDBSCAN cannot predict new points: every row joins the cluster of its nearest
    # clustered neighbours (noise points of the fit are left out of the vote).
    knn = KNeighborsClassifier(n_neighbors=5).fit(x_fit[core], lab[core])
    return knn.predict(x_all)


def cluster_assignments(
    x: np.ndarray, fit_idx: np.ndarray, method: str, param: int, seed: int
) -> np.ndarray | None:
    """Cluster id for every row of ``x`` from a clustering fitted on rows ``fit_idx``."""
    with single_thread():
        if method == "kmeans":
            return _kmeans(x[fit_idx], param, seed).predict(x)
        if method == "gmm":
            return _gmm(x[fit_idx], param, seed).predict(x)
        if method == "hdbscan":
            return _hdbscan_assign(x[fit_idx], x, param)
    raise ValueError(f"unknown clustering method {method!r}")


def _binary(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask of AGN/compact rows and their 'AGN'/'compact' labels."""
    mask = np.isin(labels, ("AGN", *COMPACT))
    return mask, np.where(labels == "AGN", "AGN", "compact").astype(object)


def score_clusters(
    clusters: np.ndarray, labels: np.ndarray, is_train: np.ndarray
) -> dict[str, Any]:
    """Balanced accuracies on the test rows with maps learned on the labelled train rows."""
    lab = labels != ""
    tr, te = lab & is_train, lab & ~is_train
    mapping, fb = learn_map(clusters[tr], labels[tr], "prior")
    pred = apply_map(clusters[te], mapping, fb)
    maj, fbm = learn_map(clusters[tr], labels[tr], "majority")
    out: dict[str, Any] = {
        "bacc_8class": balanced_accuracy(labels[te], pred),
        "bacc_8class_majority": balanced_accuracy(labels[te], apply_map(clusters[te], maj, fbm)),
        "n_clusters": int(np.unique(clusters).size),
        "n_test": int(te.sum()),
        "confusion": confusion(labels[te], pred),
    }
    mask, binlab = _binary(labels)
    btr, bte = mask & tr, mask & te
    if np.unique(binlab[btr]).size == 2 and np.unique(binlab[bte]).size == 2:
        bmap, bfb = learn_map(clusters[btr], binlab[btr], "prior")
        out["bacc_agn_vs_compact"] = balanced_accuracy(
            binlab[bte], apply_map(clusters[bte], bmap, bfb)
        )
        out["n_test_agn_vs_compact"] = int(bte.sum())
    else:
        out["bacc_agn_vs_compact"] = None
    return out


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Confusion counts over the eight classes (rows: true, columns: predicted)."""
    idx = {c: i for i, c in enumerate(CLASSES)}
    m = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in idx and p in idx:
            m[idx[t], idx[p]] += 1
    return {"classes": list(CLASSES), "counts": m.tolist()}


def _inner_score(
    clusters: np.ndarray, labels: np.ndarray, is_train: np.ndarray, rng: np.random.Generator
) -> float:
    # Train-only model selection: learn the map on half of the labelled training rows,
    # score balanced accuracy on the other half (stratified halves).
    tr = np.flatnonzero((labels != "") & is_train)
    half_a = np.zeros(len(labels), dtype=bool)
    half_a[tr[stratified_pick(labels[tr], 0.5, rng, round_up=True)]] = True
    half_b = (labels != "") & is_train & ~half_a
    mapping, fb = learn_map(clusters[half_a], labels[half_a], "prior")
    return balanced_accuracy(labels[half_b], apply_map(clusters[half_b], mapping, fb))


def _rep_rng(ctx: Context, salt: int, rep: int) -> np.random.Generator:
    # Repeat 0 draws exactly what a single run always drew; later repeats other streams.
    return ctx.rng(salt) if rep == 0 else np.random.default_rng([ctx.seed, salt, rep])


def cluster_feature_set(
    fs: FeatureSet,
    ctx: Context,
    k_grid: tuple[int, ...] = K_GRID,
    fit_cap: int | None = None,
    *,
    is_train: np.ndarray | None = None,
    rep: int = 0,
) -> dict[str, Any]:
    """The ``tuned`` protocol on one feature set: every method, the best on the train split.

    ``is_train`` (default ``ctx.is_train``) and ``rep`` (seeds of the fit subsample, the
    inner halves and the estimators) make one repeat. The result's ``_clusters`` holds the
    chosen clustering's assignment of every row (the caller pops it).
    """
    labels = ctx.labels()
    is_train = ctx.is_train if is_train is None else is_train
    fit_cap = fit_cap or ctx.max_points
    rng = _rep_rng(ctx, 11, rep)
    seed = ctx.seed + rep
    train_idx = np.flatnonzero(is_train)
    fit_idx = subsample(train_idx, fit_cap, rng)
    hdb_idx = subsample(train_idx, ctx.max_points, rng)
    n_fit = fit_idx.size
    grids = {
        "kmeans": [k for k in k_grid if k < n_fit],
        "gmm": [k for k in k_grid if k < n_fit],
        "hdbscan": sorted({max(5, hdb_idx.size // d) for d in (200, 100, 50)}),
    }
    results: dict[str, Any] = {}
    chosen: dict[str, np.ndarray] = {}
    best_method, best_inner = None, -np.inf
    for method in METHODS:
        best = None
        for param in grids[method]:
            fit_rows = hdb_idx if method == "hdbscan" else fit_idx
            clusters = cluster_assignments(fs.X, fit_rows, method, param, seed)
            if clusters is None:
                continue
            inner = _inner_score(clusters, labels, is_train, _rep_rng(ctx, 13, rep))
            if best is None or inner > best[0]:
                best = (inner, param, clusters)
        if best is None:
            if rep == 0:
                ctx.skip(f"clustering.{fs.name}.{method}",
                         "no parameter gave two or more clusters")  # fmt: skip
            continue
        inner, param, clusters = best
        res = score_clusters(clusters, labels, is_train)
        res.update({"param": param, "param_name": "min_cluster_size" if method == "hdbscan"
                    else "k", "train_inner_bacc": inner})  # fmt: skip
        results[method] = res
        chosen[method] = clusters
        if inner > best_inner:
            best_method, best_inner = method, inner
    if best_method is None:
        return {}
    head = results[best_method]
    return {
        "bacc_8class": head["bacc_8class"],
        "bacc_agn_vs_compact": head["bacc_agn_vs_compact"],
        "method": best_method,
        "param": head["param"],
        "n_clusters": head["n_clusters"],
        "methods": results,
        "n_fit": int(n_fit),
        "n_fit_hdbscan": int(hdb_idx.size),
        "_clusters": chosen[best_method],
    }


def k8_clusters(
    fs: FeatureSet, ctx: Context, is_train: np.ndarray, rep: int = 0, k: int = 8
) -> np.ndarray:
    """The ``k8`` protocol's clustering: k-means (k = 8) fitted on (at most max_points)
    training rows, every row assigned."""
    fit_idx = subsample(np.flatnonzero(is_train), ctx.max_points, _rep_rng(ctx, 19, rep))
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
    mask, binlab = _binary(labels)
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


TASKS = ("bacc_8class", "bacc_agn_vs_compact")


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


#: Quantile bins of broad-band net counts for the probe's accuracy-by-counts breakdown.
N_COUNT_BINS = 5


def by_counts(
    y: np.ndarray, pred: np.ndarray, counts: np.ndarray, n_bins: int = N_COUNT_BINS
) -> list[dict[str, Any]]:
    """Balanced accuracy of predictions within quantile bins of ``counts`` (NaN rows dropped)."""
    ok = np.isfinite(counts)
    if ok.sum() < n_bins:
        return []
    edges = np.unique(np.quantile(counts[ok], np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        return []
    b = np.clip(np.searchsorted(edges, counts, side="right") - 1, 0, edges.size - 2)
    rows = []
    for i in range(edges.size - 1):
        sel = ok & (b == i)
        if sel.any():
            bacc = balanced_accuracy(y[sel], pred[sel])
            rows.append({"counts_lo": float(edges[i]), "counts_hi": float(edges[i + 1]),
                         "n": int(sel.sum()), "bacc": bacc})  # fmt: skip
    return rows


def probe_feature_set(fs: FeatureSet, ctx: Context, n_splits: int = 5) -> dict[str, Any]:
    """Cross-validated balanced accuracy of a gradient-boosted classifier on ``fs``.

    ``*_ci95``: class-stratified bootstrap of the out-of-fold predictions. The rows and folds
    depend on the labels and the seed only, so every feature set is probed on the same rows
    (``_scored`` keeps the per-row correctness for paired differences; the caller pops it).

    With a ``net_counts_b`` column, the out-of-fold predictions are also scored per quintile
    of broad-band net counts (``*_by_counts``): how class information depends on the photons.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    labels = ctx.labels()
    idx = np.flatnonzero(labels != "")
    idx = subsample(idx, ctx.max_points, ctx.rng(17))
    # Each class needs a member in every fold.
    cls, cnt = np.unique(labels[idx], return_counts=True)
    idx = idx[np.isin(labels[idx], cls[cnt >= n_splits])]
    out: dict[str, Any] = {"n": int(idx.size), "n_splits": n_splits}
    scored: dict[str, Scored | None] = {task: None for task in TASKS}

    counts = (
        pd.to_numeric(ctx.meta["net_counts_b"], errors="coerce").to_numpy(dtype=np.float64)
        if "net_counts_b" in ctx.meta
        else None
    )

    def cv_bacc(rows: np.ndarray, y: np.ndarray, key: str) -> None:
        # 30 rounds at a high learning rate: one tree per class per round makes the 8-class
        # fit the slowest step of the evaluation; longer runs changed the result little.
        clf = HistGradientBoostingClassifier(
            max_iter=30, learning_rate=0.3, max_leaf_nodes=15, class_weight="balanced",
            early_stopping=False, random_state=ctx.seed,
        )  # fmt: skip
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=ctx.seed)
        with single_thread():
            pred = cross_val_predict(clf, fs.X[rows], y, cv=cv)
        out[key] = balanced_accuracy(y, pred)
        scored[key] = Scored(y, (pred == y).astype(float), rows)
        if counts is not None:
            out[f"{key}_by_counts"] = by_counts(y, pred, counts[rows])

    if np.unique(labels[idx]).size >= 2:
        cv_bacc(idx, labels[idx], "bacc_8class")
        out["n_classes"] = int(np.unique(labels[idx]).size)
    mask, binlab = _binary(labels)
    bidx = idx[mask[idx]]
    if bidx.size and np.unique(binlab[bidx], return_counts=True)[1].min() >= n_splits:
        if np.unique(binlab[bidx]).size == 2:
            cv_bacc(bidx, binlab[bidx], "bacc_agn_vs_compact")
    for t, task in enumerate(TASKS):
        if scored[task] is not None:
            s = summarise([scored[task]], N_BOOT, [ctx.seed, 43, t])
            out[f"{task}_ci95"] = s["ci95"]
    out["_scored"] = scored
    return out


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
