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

from xlatent.analysis._common import Context, single_thread, subsample
from xlatent.analysis.features import FeatureSet
from xlatent.core.split import stratified_pick
from xlatent.core.vocabulary import CLASSES, COMPACT

K_GRID = (8, 12, 16, 24, 32)
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


def binary_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    mask, binlab = binary_labels(labels)
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


def rep_rng(ctx: Context, salt: int, rep: int) -> np.random.Generator:
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
    rng = rep_rng(ctx, 11, rep)
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
            inner = _inner_score(clusters, labels, is_train, rep_rng(ctx, 13, rep))
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


TASKS = ("bacc_8class", "bacc_agn_vs_compact")
