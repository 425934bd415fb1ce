"""Mutual information between spectral features and variability (``var_prob_b``,
``var_index_b``).

sklearn's kNN estimator gives one MI value per feature column; the headline
``mutual_information.<features>.<var>`` is the largest over the set's columns (nats). A
permutation null (the same estimate against a shuffled target) is given beside it: values
near the null mean no detectable dependence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, subsample
from xlatent.analysis.features import FeatureSet

VARIABILITY = ("var_prob_b", "var_index_b")


def mi_per_column(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """kNN mutual information (nats) of each column of ``x`` with ``y``."""
    from sklearn.feature_selection import mutual_info_regression

    return mutual_info_regression(x, y, n_neighbors=3, random_state=seed)


def run(feature_sets: dict[str, FeatureSet], ctx: Context) -> dict[str, Any]:
    """``mutual_information.<features>.<var>`` plus per-column values and the null level."""
    out: dict[str, Any] = {}
    found = [v for v in VARIABILITY if v in ctx.meta]
    for v in set(VARIABILITY) - set(found):
        ctx.skip(f"mutual_information.{v}", f"no {v} column")
    rng = ctx.rng(37)
    for v in found:
        y_all = pd.to_numeric(ctx.meta[v], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.flatnonzero(np.isfinite(y_all))
        if ok.size < 20 or np.unique(y_all[ok]).size < 2:
            ctx.skip(f"mutual_information.{v}", "fewer than 20 finite values or constant")
            continue
        rows = subsample(ok, ctx.max_points, rng)
        y = y_all[rows]
        y_null = rng.permutation(y)
        for name, fs in feature_sets.items():
            per = mi_per_column(fs.X[rows], y, ctx.seed)
            null = mi_per_column(fs.X[rows], y_null, ctx.seed)
            entry = out.setdefault(name, {})
            entry[v] = float(per.max())
            entry[f"{v}_per_column"] = dict(zip(fs.columns, per.tolist(), strict=True))
            entry[f"{v}_null"] = float(null.max())
    if out:
        out["n_rows"] = int(min(ctx.max_points, len(ctx.meta)))
        out["estimator"] = "sklearn mutual_info_regression (k=3), max over columns, nats"
    return out
