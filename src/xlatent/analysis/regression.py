"""How much physics each feature set carries: cross-validated R^2 and latent correlations.

For every quantity (count hardness ratios, log N_H, Gamma, log kT where defined, log band
fluxes and the hard/soft flux ratio; CSC catalogue columns where the set carries them, see
:func:`quantities`), a non-linear regressor (histogram gradient boosting) and a linear
one (ridge) are scored by 5-fold cross-validated R^2 from each feature set. Rows where the
quantity is undefined (NaN: Gamma for a thermal model, kT for a power law) are left out.

The latents encode spectral *shape* only (the model divides out the amplitude), so absolute
band fluxes are expected to be poorly predicted from them; the flux ratio is the shape part.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis._common import Context, safe_log10, save_figure, single_thread, subsample
from xlatent.analysis.features import FeatureSet

N_SPLITS = 5


#: The CSC's unit of ``powlaw_nh`` (master source table: 10^20 cm^-2).
CSC_NH_UNIT_CM2 = 1e20

#: Target names, their meta source and what they are (``regression_info.targets``).
TARGET_SOURCES = {
    "hr_counts_hm": "count hardness ratio (h-m)/(h+m) of the spectrum's band net counts",
    "hr_counts_hs": "count hardness ratio (h-s)/(h+s) of the spectrum's band net counts",
    "hr_counts_ms": "count hardness ratio (m-s)/(m+s) of the spectrum's band net counts",
    "log_nh": "simulator truth: log10 N_H (cm^-2) from truth_nh_1e22",
    "gamma": "simulator truth: photon index truth_gamma",
    "log_kt": "simulator truth: log10 kT (keV) from truth_kt_kev",
    "catalog_hard_hm": "CSC catalogue hard_hm (aperture-corrected photon-flux ratio)",
    "catalog_hard_hs": "CSC catalogue hard_hs (aperture-corrected photon-flux ratio)",
    "catalog_hard_ms": "CSC catalogue hard_ms (aperture-corrected photon-flux ratio)",
    "catalog_powlaw_gamma": "CSC catalogue powlaw_gamma (absorbed power-law fit)",
    "catalog_log_nh": "CSC catalogue log10 N_H (cm^-2) = log10(powlaw_nh x 1e20)",
    "catalog_log_bb_kt": "CSC catalogue log10 bb_kt (keV, black-body fit)",
    "catalog_var_prob_b": "CSC catalogue var_prob_b (Gregory-Loredo variability probability)",
    "catalog_var_index_b": "CSC catalogue var_index_b (Gregory-Loredo variability index)",
}


def quantities(meta: pd.DataFrame, hardness: pd.DataFrame | None = None) -> pd.DataFrame:
    """The regression targets that exist in ``meta`` (columns: quantity names).

    ``hardness``: :func:`~xlatent.analysis.features.hardness_table` of the set (count ratios
    ``hr_counts_*`` and, where the set has them, the catalogue's ``hard_*``). Targets, each
    named by its source (:data:`TARGET_SOURCES`): the count ratios; the simulator's truth
    (``log_nh``, ``gamma``, ``log_kt``, ``log_flux_*``); and CSC catalogue columns,
    ``catalog_<name>``: ``hard_*``, ``powlaw_gamma``, ``powlaw_nh`` (CSC unit 1e20 cm^-2,
    regressed as ``catalog_log_nh`` = log10 cm^-2 like ``log_nh``), ``bb_kt`` (as
    ``catalog_log_bb_kt``) and, on sets without simulator truth (the simulator writes its own
    ``var_*``), ``var_prob_b`` and ``var_index_b``. Only targets defined on at least
    ``2 x N_SPLITS`` rows are kept.
    """
    from xlatent.analysis.features import catalog_hardness
    from xlatent.core.bands import COUNT_HARDNESS_COLUMNS

    q: dict[str, np.ndarray] = {}
    src = hardness if hardness is not None else meta
    for c in COUNT_HARDNESS_COLUMNS:
        if c in src:
            q[c] = pd.to_numeric(src[c], errors="coerce").to_numpy(dtype=np.float64)

    def col(name: str) -> np.ndarray | None:
        if name not in meta:
            return None
        return pd.to_numeric(meta[name], errors="coerce").to_numpy(dtype=np.float64)

    if (x := col("truth_nh_1e22")) is not None:
        q["log_nh"] = safe_log10(x) + 22.0
    if (x := col("truth_gamma")) is not None:
        q["gamma"] = x
    if (x := col("truth_kt_kev")) is not None:
        q["log_kt"] = safe_log10(x)
    for band in ("s", "m", "h", "b"):
        if (x := col(f"truth_flux_{band}")) is not None:
            q[f"log_flux_{band}"] = safe_log10(x)
    if "log_flux_h" in q and "log_flux_s" in q:
        q["log_flux_h_over_s"] = q["log_flux_h"] - q["log_flux_s"]

    if hardness is not None:
        cat = {c: hardness[c].to_numpy(np.float64) for c in ("hard_hm", "hard_hs", "hard_ms")
               if c in hardness}  # fmt: skip
    elif all(c in meta for c in COUNT_HARDNESS_COLUMNS):
        cat = catalog_hardness(meta, meta[list(COUNT_HARDNESS_COLUMNS)])
    else:
        cat = {}
    for c, v in cat.items():
        q[f"catalog_{c}"] = v
    if (x := col("powlaw_gamma")) is not None:
        q["catalog_powlaw_gamma"] = x
    if (x := col("powlaw_nh")) is not None:
        q["catalog_log_nh"] = safe_log10(x * CSC_NH_UNIT_CM2)
    if (x := col("bb_kt")) is not None:
        q["catalog_log_bb_kt"] = safe_log10(x)
    if not any(str(c).startswith("truth_") for c in meta.columns):
        for name in ("var_prob_b", "var_index_b"):
            if (x := col(name)) is not None:
                q[f"catalog_{name}"] = x
    out = pd.DataFrame(q, index=meta.index)
    return out.loc[:, out.notna().sum() >= 2 * N_SPLITS]


def cv_r2(x: np.ndarray, y: np.ndarray, model: str, seed: int) -> float:
    """Out-of-fold R^2 of ``model`` ('hgb' or 'linear') by 5-fold cross-validation."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    if model == "hgb":
        reg = HistGradientBoostingRegressor(
            max_iter=60, learning_rate=0.15, early_stopping=False, random_state=seed
        )
    else:
        reg = Ridge(alpha=1e-3)
    cv = KFold(n_splits=N_SPLITS, shuffle=True, random_state=seed)
    with single_thread():
        pred = cross_val_predict(reg, x, y, cv=cv)
    return float(r2_score(y, pred))


def spearman_matrix(z: np.ndarray, q: pd.DataFrame) -> np.ndarray:
    """Spearman rho between every latent column and every quantity (NaN rows dropped)."""
    from scipy.stats import spearmanr

    out = np.full((z.shape[1], q.shape[1]), np.nan)
    for j, name in enumerate(q.columns):
        y = q[name].to_numpy()
        ok = np.isfinite(y)
        for i in range(z.shape[1]):
            out[i, j] = spearmanr(z[ok, i], y[ok]).statistic
    return out


def mi_matrix(z: np.ndarray, q: pd.DataFrame, seed: int) -> np.ndarray:
    """Mutual information (nats, kNN estimator) between each latent column and quantity."""
    from sklearn.feature_selection import mutual_info_regression

    out = np.full((z.shape[1], q.shape[1]), np.nan)
    for j, name in enumerate(q.columns):
        y = q[name].to_numpy()
        ok = np.isfinite(y)
        out[:, j] = mutual_info_regression(z[ok], y[ok], random_state=seed)
    return out


def _heatmaps(rho: np.ndarray, mi: np.ndarray, qnames: list[str], ctx: Context) -> None:
    import matplotlib.pyplot as plt

    d = rho.shape[0]
    fig, axes = plt.subplots(1, 2, figsize=(2 + 1.3 * len(qnames), 0.45 * d + 2.5))
    for ax, mat, title, cmap, lim in (
        (axes[0], rho, "Spearman rho", "RdBu_r", (-1, 1)),
        (axes[1], mi, "mutual information (nats)", "viridis", (0, max(np.nanmax(mi), 1e-3))),
    ):
        im = ax.imshow(mat, cmap=cmap, vmin=lim[0], vmax=lim[1], aspect="auto")
        for i in range(d):
            for j in range(len(qnames)):
                ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(len(qnames)), qnames, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(d), [f"latent_{i}" for i in range(d)], fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    save_figure(
        ctx, fig, "latent_correlations.png",
        "Each latent dimension against hardness ratios, true physical parameters and catalogue "
        "columns (catalog_*) where the set has them: Spearman "
        "rank correlation (left) and kNN mutual information (right; subsampled).",
        "regression",
    )  # fmt: skip


def _r2_bars(r2: dict[str, dict[str, float]], ctx: Context) -> None:
    import matplotlib.pyplot as plt

    sets = [s for s in r2 if r2[s]]
    qnames = sorted({q for s in sets for q in r2[s]}, key=lambda q: list(r2[sets[0]]).index(q)
                    if q in r2[sets[0]] else 99)  # fmt: skip
    if not sets or not qnames:
        return
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(qnames), 3.6))
    w = 0.8 / len(sets)
    for i, s in enumerate(sets):
        vals = [r2[s].get(q, np.nan) for q in qnames]
        ax.bar(np.arange(len(qnames)) + (i - (len(sets) - 1) / 2) * w, vals, w, label=s)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.02)
    ax.set_xticks(range(len(qnames)), qnames, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("5-fold CV $R^2$ (gradient boosting)")
    ax.legend(fontsize=7, ncol=min(4, len(sets)))
    fig.tight_layout()
    save_figure(
        ctx, fig, "regression_r2.png",
        "Cross-validated R^2 of a gradient-boosted regressor predicting each quantity from each "
        "feature set (rows where the quantity is defined). Hardness features contain the "
        "hardness ratios and the oracle contains N_H, Gamma and kT, so those bars are "
        "trivially near 1.",
        "regression",
    )  # fmt: skip


def run(
    feature_sets: dict[str, FeatureSet],
    z: np.ndarray,
    ctx: Context,
    hardness: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """``regression``, ``regression_linear`` and ``correlations`` metrics; figures."""
    q = quantities(ctx.meta, hardness)
    if q.shape[1] == 0:
        ctx.skip("regression", "no hardness ratios, truth_* or catalogue columns to regress")
        return {}
    rows = subsample(np.arange(len(q)), ctx.max_points, ctx.rng(23))
    r2: dict[str, dict[str, float]] = {}
    r2_lin: dict[str, dict[str, float]] = {}
    n_rows: dict[str, int] = {}
    for name, fs in feature_sets.items():
        r2[name], r2_lin[name] = {}, {}
        for qn in q.columns:
            y = q[qn].to_numpy()[rows]
            ok = np.isfinite(y)
            n_rows[qn] = int(ok.sum())
            if ok.sum() < 2 * N_SPLITS:
                continue
            r2[name][qn] = cv_r2(fs.X[rows][ok], y[ok], "hgb", ctx.seed)
            r2_lin[name][qn] = cv_r2(fs.X[rows][ok], y[ok], "linear", ctx.seed)
    missing = [c for c in ("log_nh", "gamma", "log_kt", "log_flux_b") if c not in q]
    if missing:
        ctx.skip("regression.truth", f"no truth for {', '.join(missing)} (real data)")
    _r2_bars(r2, ctx)

    qs = q.iloc[rows].reset_index(drop=True)
    rho = spearman_matrix(z[rows], qs)
    mi_rows = np.arange(len(rows))  # already capped at max_points
    mi = mi_matrix(z[rows][mi_rows], qs.iloc[mi_rows], ctx.seed)
    _heatmaps(rho, mi, list(q.columns), ctx)
    corr = {
        "quantities": list(q.columns),
        "latent_dims": [f"latent_{i}" for i in range(z.shape[1])],
        "spearman": {qn: rho[:, j] for j, qn in enumerate(q.columns)},
        "mutual_information": {qn: mi[:, j] for j, qn in enumerate(q.columns)},
    }
    return {
        "regression": r2,
        "regression_linear": r2_lin,
        "regression_info": {
            "n_rows": n_rows,
            "n_splits": N_SPLITS,
            "subsample": int(len(rows)),
            "nonlinear": "HistGradientBoostingRegressor(max_iter=60, learning_rate=0.15)",
            "linear": "Ridge(alpha=1e-3)",
            "targets": {qn: TARGET_SOURCES.get(qn, "simulator truth") for qn in q.columns},
        },  # fmt: skip
        "correlations": corr,
    }
