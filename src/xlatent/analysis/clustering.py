"""Unsupervised class recovery, as in the reference study, plus a supervised probe.

Protocol (identical for every feature set):

1. Cluster the *training* rows (k-means, Gaussian mixture, HDBSCAN), all of them, labelled or
   not; every row (train and test) is then assigned to a cluster.
2. The number of clusters (k in 8..32; HDBSCAN's minimum cluster size) and the headline method
   are chosen on the training split only: the labelled training rows are halved, the
   cluster->class map is learned on one half and balanced accuracy measured on the other.
3. The final cluster->class map is learned on all labelled training rows and scored on the
   held-out test rows: 8-class balanced accuracy, and AGN versus compact objects (HMXB, LMXB,
   NS; rows of those classes only, map re-learned for the two groups).

Cluster->class rule: ``argmax_c n(cluster, c) / n(c)`` -- the class most *over-represented*
in the cluster relative to its prior. Balanced accuracy weights every class equally, and a
majority-vote map would send almost every cluster to AGN (half the labelled CSC sources); the
prior-normalised rule lets a cluster speak for a rare class it is enriched in. The
majority-vote result is reported too (``bacc_8class_majority``).

The probe (``probe.<features>``) is a supervised upper reference: a histogram gradient-boosted
classifier with class-balanced weights, 5-fold stratified cross-validation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, save_figure, single_thread, subsample
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


def cluster_feature_set(
    fs: FeatureSet, ctx: Context, k_grid: tuple[int, ...] = K_GRID, fit_cap: int | None = None
) -> dict[str, Any]:
    """Every method on one feature set; the headline is the method best on the train split."""
    labels = ctx.labels()
    is_train = ctx.is_train
    fit_cap = fit_cap or ctx.max_points
    rng = ctx.rng(11)
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
    best_method, best_inner = None, -np.inf
    for method in METHODS:
        best = None
        for param in grids[method]:
            fit_rows = hdb_idx if method == "hdbscan" else fit_idx
            clusters = cluster_assignments(fs.X, fit_rows, method, param, ctx.seed)
            if clusters is None:
                continue
            inner = _inner_score(clusters, labels, is_train, ctx.rng(13))
            if best is None or inner > best[0]:
                best = (inner, param, clusters)
        if best is None:
            ctx.skip(f"clustering.{fs.name}.{method}", "no parameter gave two or more clusters")
            continue
        inner, param, clusters = best
        res = score_clusters(clusters, labels, is_train)
        res.update({"param": param, "param_name": "min_cluster_size" if method == "hdbscan"
                    else "k", "train_inner_bacc": inner})  # fmt: skip
        results[method] = res
        if inner > best_inner:
            best_method, best_inner = method, inner
    if best_method is None:
        return {}
    head = results[best_method]
    return {
        "bacc_8class": head["bacc_8class"],
        "bacc_agn_vs_compact": head["bacc_agn_vs_compact"],
        "method": best_method,
        "n_clusters": head["n_clusters"],
        "methods": results,
        "n_fit": int(n_fit),
        "n_fit_hdbscan": int(hdb_idx.size),
    }


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
        ax.set_title(f"{name}: {r['method']}, {r['n_clusters']} clusters\n"
                     f"bacc {r['bacc_8class']:.2f}", fontsize=9)  # fmt: skip
    axes[0][0].set_ylabel("true class")
    fig.tight_layout()
    save_figure(
        ctx, fig, "confusion_clustering.png",
        "Held-out confusion matrices (row-normalised recall) of the cluster->class map, one "
        "panel per feature set, for the clustering method chosen on the training split.",
        "clustering",
    )  # fmt: skip


def run(feature_sets: dict[str, FeatureSet], ctx: Context) -> dict[str, Any]:
    """Clustering and probe metrics for every feature set (``clustering``, ``probe``)."""
    labels = ctx.labels()
    n_tr = np.unique(labels[(labels != "") & ctx.is_train]).size
    n_te = np.unique(labels[(labels != "") & ~ctx.is_train]).size
    if n_tr < 2 or n_te < 2:
        ctx.skip("clustering", f"needs >= 2 labelled classes in train and test (have {n_tr}, "
                 f"{n_te}); source_class is empty for most real sources")  # fmt: skip
        return {"clustering": {}, "probe": {}}
    clustering = {name: cluster_feature_set(fs, ctx) for name, fs in feature_sets.items()
                  if fs.role == "compare"}  # fmt: skip
    probe = {name: probe_feature_set(fs, ctx) for name, fs in feature_sets.items()}
    plot_confusions(clustering, ctx)
    clustering["chance_8class"] = 1.0 / n_te
    clustering["protocol"] = (
        "clusters fitted on the training split; k / min_cluster_size and the method chosen on "
        "training rows only (half/half inner split); cluster->class map argmax n(k,c)/n(c) "
        "learned on labelled training rows; balanced accuracy on held-out test rows"
    )
    return {"clustering": clustering, "probe": probe}
