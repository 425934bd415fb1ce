"""The supervised probe: what a gradient-boosted classifier takes from each feature set.

A histogram gradient-boosted classifier with class-balanced weights, 5-fold stratified
cross-validation on the labelled rows (the same rows and folds for every feature set); its
95% interval is a class-stratified bootstrap of the out-of-fold predictions (see
:mod:`xlatent.analysis.uncertainty`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, single_thread, subsample
from xlatent.analysis.clustering import TASKS, balanced_accuracy, binary_labels
from xlatent.analysis.features import FeatureSet
from xlatent.analysis.uncertainty import N_BOOT, Scored, summarise
from xlatent.core.parallel import default_workers

#: Quantile bins of broad-band net counts for the probe's accuracy-by-counts breakdown.
N_COUNT_BINS = 5
#: Rows from which the cross-validation's folds are fitted in parallel processes (one per
#: core, at most one per fold). Below it, starting the processes costs more than it saves.
PARALLEL_MIN_ROWS = 2000


def probe_jobs(n_rows: int, n_splits: int) -> int:
    """Processes for one cross-validation of ``n_rows`` rows in ``n_splits`` folds."""
    if n_rows < PARALLEL_MIN_ROWS:
        return 1
    return max(1, min(n_splits, default_workers()))


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


def probe_classifier(seed: int) -> Any:
    """The probe's (unfitted) classifier: gradient boosting with class-balanced weights."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    # 30 rounds at a high learning rate: one tree per class per round makes the 8-class
    # fit the slowest step of the evaluation; longer runs changed the result little.
    return HistGradientBoostingClassifier(
        max_iter=30, learning_rate=0.3, max_leaf_nodes=15, class_weight="balanced",
        early_stopping=False, random_state=seed,
    )  # fmt: skip


def probe_feature_set(fs: FeatureSet, ctx: Context, n_splits: int = 5) -> dict[str, Any]:
    """Cross-validated balanced accuracy of a gradient-boosted classifier on ``fs``.

    ``*_ci95``: class-stratified bootstrap of the out-of-fold predictions. The rows and folds
    depend on the labels and the seed only, so every feature set is probed on the same rows
    (``_scored`` keeps the per-row correctness for paired differences; the caller pops it).

    With a ``net_counts_b`` column, the out-of-fold predictions are also scored per quintile
    of broad-band net counts (``*_by_counts``): how class information depends on the photons.
    """
    from joblib import parallel_config
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
        clf = probe_classifier(ctx.seed)
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=ctx.seed)
        # The folds are independent fits: in parallel processes, each on one thread as the
        # sequential path is, they give the same predictions (most of a fit on a few thousand
        # rows is scikit-learn's single-threaded binning of class-weighted features).
        with single_thread(), parallel_config(backend="loky", inner_max_num_threads=1):
            pred = cross_val_predict(clf, fs.X[rows], y, cv=cv,
                                     n_jobs=probe_jobs(rows.size, n_splits))  # fmt: skip
        out[key] = balanced_accuracy(y, pred)
        scored[key] = Scored(y, (pred == y).astype(float), rows)
        if counts is not None:
            out[f"{key}_by_counts"] = by_counts(y, pred, counts[rows])

    if np.unique(labels[idx]).size >= 2:
        cv_bacc(idx, labels[idx], "bacc_8class")
        out["n_classes"] = int(np.unique(labels[idx]).size)
    mask, binlab = binary_labels(labels)
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
