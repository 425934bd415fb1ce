"""Mutual information between spectral features and variability (``var_prob_b``,
``var_index_b``), with a permutation test and comparisons at equal dimension.

Estimators (nats, k = 3 neighbours; the estimators of sklearn's ``mutual_info_regression`` and
``mutual_info_classif``, re-implemented with sorted-array counting so that a permutation null
is affordable):

- continuous target (``var_prob_b``): Kraskov-Stoegbauer-Grassberger between one feature
  column and the target;
- discrete target (integer values, at most ``MAX_DISCRETE_LEVELS`` distinct, e.g. the
  Gregory-Loredo ``var_index_b``): Ross (2014), continuous feature against discrete target.
  Rows whose target value occurs fewer than k + 1 times are left out.

Columns: the feature set's value columns; the 0/1 missing-value indicators are left out (a
kNN estimator is not meant for binary columns). Features and continuous targets get a 1e-10
relative jitter, as in sklearn, to break ties.

Permutation null: the target is shuffled ``N_PERMUTATIONS`` times (the same permutations for
every feature set) and every statistic recomputed. p-value = (1 + #{null >= observed}) /
(1 + permutations). Statistics per set and target:

- ``<var>``: the largest per-column MI (its null is the largest over the *same* columns, so
  the p-value accounts for the number of columns); ``<var>_null`` is the null's mean,
  ``<var>_excess`` = observed - null mean (a bias-corrected value).
- ``<var>_topk``: the mean MI of the set's best ``k_equal`` columns, ``k_equal`` being the
  smallest column count among the compared sets (4 for hardness): the comparison across sets
  at equal dimension, with ``_topk_p_value`` and ``_topk_excess`` (observed - null mean).
- ``<var>_per_column`` and ``<var>_per_column_p_value``.

Only ``latent``, ``hardness`` and ``pca`` are compared (``MI_SETS``): the oracle and the
spectrum-sized reference sets are not variability features, and each column costs a
permutation test.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, subsample
from xlatent.analysis.features import FeatureSet

VARIABILITY = ("var_prob_b", "var_index_b")
MI_SETS = ("latent", "hardness", "pca")
N_NEIGHBORS = 3
N_PERMUTATIONS = 100
#: Rows used for MI (after the max_points cap): the permutation test's cost is linear in it.
MI_MAX_ROWS = 1500
#: A target whose finite values are all integers with at most this many levels is discrete.
MAX_DISCRETE_LEVELS = 32


def is_discrete(y: np.ndarray) -> bool:
    """Integer-valued with at most ``MAX_DISCRETE_LEVELS`` distinct values."""
    y = np.asarray(y, dtype=np.float64)
    y = y[np.isfinite(y)]
    return bool(y.size and np.all(y == np.round(y))
                and np.unique(y).size <= MAX_DISCRETE_LEVELS)  # fmt: skip


def _jitter(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    sd = v.std()
    v = v / sd if sd > 0 else v.copy()
    return v + 1e-10 * max(1.0, float(np.mean(np.abs(v)))) * rng.standard_normal(v.size)


def _count_within(sorted_v: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """For each i: the number of values (self included) with |v_j - v_i| <= r_i."""
    return np.searchsorted(sorted_v, v + r, side="right") - np.searchsorted(
        sorted_v, v - r, side="left"
    )


def mi_cc(x: np.ndarray, y: np.ndarray, k: int = N_NEIGHBORS) -> float:
    """KSG mutual information of two continuous 1-D samples (nats; may be slightly < 0)."""
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    xy = np.column_stack([x, y])
    d, _ = cKDTree(xy).query(xy, k=k + 1, p=np.inf)
    r = d[:, -1] * (1.0 - 1e-9)  # strictly inside the k-th neighbour (robust to rounding)
    nx = _count_within(np.sort(x), x, r) - 1
    ny = _count_within(np.sort(y), y, r) - 1
    n = x.size
    return float(digamma(n) + digamma(k) - np.mean(digamma(nx + 1)) - np.mean(digamma(ny + 1)))


def _kth_within(v: np.ndarray, k: int) -> np.ndarray:
    """Distance from each value of ``v`` to its k-th nearest other value (1-D)."""
    order = np.argsort(v)
    s = v[order]
    m = s.size
    offsets = np.r_[-k:0, 1 : k + 1]
    pos = np.arange(m)[:, None] + offsets[None, :]
    dist = np.where((pos >= 0) & (pos < m), np.abs(s[np.clip(pos, 0, m - 1)] - s[:, None]),
                    np.inf)  # fmt: skip
    kth = np.partition(dist, k - 1, axis=1)[:, k - 1]
    out = np.empty(m)
    out[order] = kth
    return out


def mi_cd(x: np.ndarray, codes: np.ndarray, k: int = N_NEIGHBORS) -> float:
    """Ross (2014) mutual information of continuous ``x`` and discrete ``codes`` (nats).

    Every level must occur more than ``k`` times.
    """
    from scipy.special import digamma

    r = np.empty(x.size)
    n_label = np.empty(x.size)
    for c in np.unique(codes):
        sel = codes == c
        r[sel] = _kth_within(x[sel], k)
        n_label[sel] = sel.sum()
    m_all = _count_within(np.sort(x), x, r * (1.0 - 1e-9))
    n = x.size
    return float(digamma(n) + digamma(k) - np.mean(digamma(n_label)) - np.mean(digamma(m_all)))


def mi_with_null(
    x: np.ndarray, y: np.ndarray, discrete: bool, perms: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column MI of ``x`` (n, d) with ``y`` and under each permutation: (d,), (P, d)."""
    rng = np.random.default_rng(seed)
    fn = mi_cd if discrete else mi_cc
    yy = np.unique(y, return_inverse=True)[1] if discrete else _jitter(y, rng)
    obs = np.empty(x.shape[1])
    null = np.empty((perms.shape[0], x.shape[1]))
    for j in range(x.shape[1]):
        xj = _jitter(x[:, j], rng)
        obs[j] = fn(xj, yy)
        for p, perm in enumerate(perms):
            null[p, j] = fn(xj, yy[perm])
    return obs, null


def _p_value(obs: float | np.ndarray, null: np.ndarray) -> Any:
    return (1.0 + (null >= np.asarray(obs)).sum(axis=0)) / (1.0 + null.shape[0])


def _value_columns(fs: FeatureSet) -> list[int]:
    return [j for j, c in enumerate(fs.columns) if not c.endswith("_missing")] or list(
        range(fs.X.shape[1])
    )


def run(
    feature_sets: dict[str, FeatureSet], ctx: Context, n_permutations: int = N_PERMUTATIONS
) -> dict[str, Any]:
    """``mutual_information.<features>.<var>`` with permutation p-values (see module doc)."""
    out: dict[str, Any] = {}
    found = [v for v in VARIABILITY if v in ctx.meta]
    for v in set(VARIABILITY) - set(found):
        ctx.skip(f"mutual_information.{v}", f"no {v} column")
    sets = {n: fs for n, fs in feature_sets.items() if n in MI_SETS or fs.role == "mi"}
    if not sets:  # e.g. unit tests with other names: every set of at most 32 columns
        sets = {n: fs for n, fs in feature_sets.items() if fs.X.shape[1] <= 32}
    cols = {n: _value_columns(fs) for n, fs in sets.items()}
    k_eq = min((len(c) for c in cols.values()), default=0)
    rng = ctx.rng(37)
    kinds, n_rows = {}, {}
    for v in found:
        y_all = pd.to_numeric(ctx.meta[v], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(y_all)
        discrete = is_discrete(y_all)
        if discrete:  # levels too rare for the k-neighbour estimator are left out
            vals, cnt = np.unique(y_all[ok], return_counts=True)
            ok &= np.isin(y_all, vals[cnt > N_NEIGHBORS])
        ok = np.flatnonzero(ok)
        if ok.size < 20 or np.unique(y_all[ok]).size < 2:
            ctx.skip(f"mutual_information.{v}", "fewer than 20 usable values or constant")
            continue
        rows = subsample(ok, min(ctx.max_points, MI_MAX_ROWS), rng)
        y = y_all[rows]
        perms = np.array([rng.permutation(y.size) for _ in range(n_permutations)])
        kinds[v] = "discrete (Ross 2014)" if discrete else "continuous (KSG)"
        n_rows[v] = int(rows.size)
        for name, fs in sets.items():
            x = fs.X[np.ix_(rows, cols[name])]
            obs, null = mi_with_null(x, y, discrete, perms, ctx.seed)
            top_obs = np.sort(obs)[::-1][:k_eq].mean()
            top_null = np.sort(null, axis=1)[:, ::-1][:, :k_eq].mean(axis=1)
            names = [fs.columns[j] for j in cols[name]]
            out.setdefault(name, {}).update({
                v: float(obs.max()),
                f"{v}_null": float(null.max(axis=1).mean()),
                f"{v}_null_q95": float(np.quantile(null.max(axis=1), 0.95)),
                f"{v}_excess": float(obs.max() - null.max(axis=1).mean()),
                f"{v}_p_value": float(_p_value(obs.max(), null.max(axis=1))),
                f"{v}_topk": float(top_obs),
                f"{v}_topk_excess": float(top_obs - top_null.mean()),
                f"{v}_topk_p_value": float(_p_value(top_obs, top_null)),
                f"{v}_per_column": dict(zip(names, obs.tolist(), strict=True)),
                f"{v}_per_column_p_value": dict(zip(names, _p_value(obs, null).tolist(),
                                                    strict=True)),
            })  # fmt: skip
    if out:
        out.update({
            "n_rows": n_rows,
            "n_permutations": n_permutations,
            "k_equal": k_eq,
            "target_type": kinds,
            "estimator": f"kNN mutual information (k={N_NEIGHBORS}, nats): KSG for continuous "
            "targets, Ross 2014 for discrete (integer) ones; per feature column; permutation "
            f"null with {n_permutations} shuffles of the target",
            "equal_dimension": f"<var>_topk: mean MI of each set's best {k_eq} columns (the "
            "smallest set's column count), against the same statistic under the null",
        })  # fmt: skip
    return out
