"""``evaluate``: every analysis of a latent catalogue against baselines, in one call.

Writes ``out_dir/metrics.json`` (atomically; nested dicts, so ``clustering.latent.bacc_8class``
is ``metrics["clustering"]["latent"]["bacc_8class"]``, see :func:`get_metric`) and the PNG
figures it lists under ``figures``. Whatever cannot run on the input (no labels, no truth, no
model) is listed with its reason under ``skipped``; evaluation itself does not fail for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis import (
    interpretation,
    latent_errors,
    maps,
    protocols,
    reconstruction,
    regression,
    timedomain,
)
from xlatent.analysis._common import REFERENCE, Context, dumps, make_split, single_thread
from xlatent.analysis.features import align, build_feature_sets, hardness_table
from xlatent.analysis.invariance import response_invariance
from xlatent.analysis.outliers import evaluated_unusual

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
FORMAT = "xlatent.metrics"
#: 2: clustering protocols (k8, k8_majority, tuned) with 95% intervals, probe intervals,
#: paired differences, the noiseless ceiling, MI permutation p-values (issue 14).
#: 3: ``response_invariance`` (the same sources through several responses, issue 12).
FORMAT_VERSION = 3


def _name(obj: Any, kind: str) -> str:
    return str(obj) if isinstance(obj, (str, Path)) else f"<{kind} in memory>"


def _read_set(spectrum_set: Any) -> Any:
    if isinstance(spectrum_set, (str, Path)):
        from xlatent.core import SpectrumSet

        return SpectrumSet.read(spectrum_set)
    return spectrum_set


def _read_latents(latents: Any) -> pd.DataFrame:
    if isinstance(latents, pd.DataFrame):
        return latents
    try:
        from xlatent.model.catalog import read_latents
    except ImportError:  # pragma: no cover - model package absent
        return pd.read_parquet(latents)
    return read_latents(latents)


def model_info(model: Any) -> dict[str, Any]:
    """A JSON-friendly description of a fitted model (kind, dimension, configuration).

    An sklearn-style ``get_params()`` is preferred (``params``: its scalar values); the older
    ``arch`` / ``train_cfg`` dataclasses are still read when present.
    """
    if model is None:
        return {}
    info: dict[str, Any] = {"kind": type(model).__name__}
    get_params = getattr(model, "get_params", None)
    if callable(get_params):  # sklearn-style estimator: its explicit parameters
        with contextlib.suppress(Exception):
            params = get_params(deep=False) if _takes_deep(get_params) else get_params()
            info["params"] = {k: v for k, v in dict(params).items()
                              if isinstance(v, (int, float, str, bool, type(None)))}  # fmt: skip
    for attr in ("latent_dim", "n_components", "loss", "device"):
        val = getattr(model, attr, None)
        if isinstance(val, (int, float, str)):
            info[attr] = val
    for attr in ("arch", "train_cfg"):
        val = getattr(model, attr, None)
        if dataclasses.is_dataclass(val) and not isinstance(val, type):
            info[attr] = {k: v for k, v in dataclasses.asdict(val).items()
                          if isinstance(v, (int, float, str, bool, type(None)))}  # fmt: skip
    history = getattr(model, "history_", None)
    if isinstance(history, list) and history:
        info["epochs_run"] = len(history)
        if isinstance(history[-1], dict):
            info["last_epoch"] = {k: v for k, v in history[-1].items()
                                  if isinstance(v, (int, float, str))}  # fmt: skip
    net = getattr(model, "net", None)
    if net is not None and hasattr(net, "parameters"):
        with contextlib.suppress(Exception):
            info["n_parameters"] = int(sum(p.numel() for p in net.parameters()))
    return info


def _takes_deep(fn: Any) -> bool:
    import inspect

    try:
        return "deep" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _hold_out_trained(ctx: Context, models: tuple[Any, ...], set_name: str) -> int | None:
    """Keep the spectra a given model was fitted on out of every score.

    They may still fit the downstream maps and probes (as the models' own training split), but
    are never scored: ``ctx.is_train`` is set for them. Returns how many rows that is (None when
    no model records its training spectra) and refuses a set with nothing left to score.
    """
    recorded = [set(ids) for m in models if (ids := getattr(m, "training_ids_", None))]
    if not recorded:
        return None
    seen = ctx.meta["spec_id"].astype(str).isin(set().union(*recorded)).to_numpy()
    moved = int((seen & ~ctx.is_train).sum())
    ctx.is_train = ctx.is_train | seen
    if not (~ctx.is_train).any():
        from xlatent.core import InputError

        raise InputError(
            set_name,
            f"the model was fitted on all {int(seen.sum())} spectra with latents, so none is "
            "held out to score; train on the set's 'train' rows (the default of xlatent train)",
        )
    if moved:
        ctx.notes.append(
            f"{moved} spectra the model was fitted on were on the test side; scored none of them"
        )
    return int(seen.sum())


def _data_info(s: Any, n_input: int, ctx: Context, counts_b: np.ndarray) -> dict[str, Any]:
    labels = ctx.labels()
    lab = pd.Series(labels[labels != ""]).value_counts()
    q = np.nanquantile(counts_b, [0.0, 0.1, 0.5, 0.9, 1.0]) if len(counts_b) else []
    return {
        "n_spectra_in_set": int(n_input),
        "n_evaluated": len(s),
        "n_without_latents": int(n_input - len(s)),
        "n_labelled": int((labels != "").sum()),
        "classes": {k: int(v) for k, v in lab.items()},
        "n_train": int(ctx.is_train.sum()),
        "n_test": int((~ctx.is_train).sum()),
        "split_source": "meta 'split' column" if "split" in ctx.meta else "stratified 70/30",
        "has_truth": bool(getattr(s, "expected_counts", None) is not None),
        "n_bins": int(s.grid.n_bins),
        "energy_range_kev": [float(s.grid.edges_kev[0]), float(s.grid.edges_kev[-1])],
        "net_counts_b_quantiles": {
            "min": q[0],
            "p10": q[1],
            "median": q[2],
            "p90": q[3],
            "max": q[4],
        }
        if len(q)
        else {},  # fmt: skip
        "median_exposure_s": float(np.median(s.exposure_s)) if len(s) else None,
        "provenance_steps": [p.get("step", "?") for p in getattr(s, "provenance", [])],
    }


def feature_info(fs: Any) -> dict[str, Any]:
    """The ``features.<name>`` entry of metrics.json for one FeatureSet."""
    return {"dim": fs.raw_dim, "n_columns": fs.X.shape[1], "columns": fs.columns,
            "description": fs.description, "role": fs.role, **fs.info}  # fmt: skip


def headline_rows(metrics: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """One row per feature set: both clustering protocols and the probe with 95% intervals.

    ``clustering_bacc_8class`` / ``clustering_bacc_agn_vs_compact`` are the tuned protocol's
    (as before format 2); ``<p>_bacc_8class[_ci95]`` for ``p`` in k8, k8_majority, tuned and
    probe.
    """
    tasks = ("bacc_8class", "bacc_agn_vs_compact")
    rows = []
    for name in names:
        c = metrics.get("clustering", {}).get(name, {}) or {}
        p = metrics.get("probe", {}).get(name, {}) or {}
        r = metrics.get("reconstruction", {}).get(name, {}) or {}
        row: dict[str, Any] = {
            "features": name,
            "dim": metrics["features"][name]["dim"],
            "role": metrics["features"][name].get("role"),
            "clustering_bacc_8class": c.get("bacc_8class"),
            "clustering_bacc_agn_vs_compact": c.get("bacc_agn_vs_compact"),
            "clustering_method": c.get("method"),
        }
        for proto, src in [*((q, (c.get("protocols") or {}).get(q) or {})
                             for q in ("k8", "k8_majority", "tuned")), ("probe", p)]:  # fmt: skip
            for task in tasks:
                row[f"{proto}_{task}"] = src.get(task)
                row[f"{proto}_{task}_ci95"] = src.get(f"{task}_ci95")
        r = r if isinstance(r, dict) else {}
        row["deviance_ratio"] = r.get("deviance_ratio")
        row["deviance_ratio_ci95"] = r.get("deviance_ratio_ci95")
        rows.append(row)
    return rows


def _analyses(
    metrics: dict[str, Any],
    feature_sets: dict[str, Any],
    z: np.ndarray,
    ctx: Context,
    hard: pd.DataFrame,
    projection: str,
    guarded: Any,
    n_repeats: int,
) -> None:
    """The feature-set analyses, each guarded (a failure is recorded, the rest still run)."""
    if feature_sets:
        with guarded("clustering"):
            metrics.update(protocols.run(feature_sets, ctx, n_repeats))
        with guarded("regression"):
            metrics.update(regression.run(feature_sets, z, ctx, hard))
        with guarded("mutual_information"):
            metrics["mutual_information"] = timedomain.run(feature_sets, ctx)
    with guarded("interpretation"):
        metrics["interpretation"] = interpretation.run(z, ctx, hard)
    if "latent" in feature_sets:
        with guarded("maps"):
            metrics["maps"] = maps.run(feature_sets["latent"].X, ctx, hard, method=projection)


def _invariance(pairs: Any, s: Any, z: np.ndarray, model: Any, ctx: Context) -> Any:
    """``response_invariance`` of ``model`` on ``pairs`` (or ``pairs(s)``), or None (skipped)."""
    if model is None or not hasattr(model, "transform") or not hasattr(model, "reconstruct"):
        ctx.skip("response_invariance", "no model object with .transform() and .reconstruct()")
        return None
    sets = pairs(s) if callable(pairs) else pairs
    if not sets:
        ctx.skip("response_invariance", "no response sets were given (the set is not simulated)")
        return None
    return response_invariance(model, sets, s, reference_latents=z, is_train=ctx.is_train,
                               seed=ctx.seed, max_points=ctx.max_points)  # fmt: skip


def evaluate(
    spectrum_set: Any,
    latents_df: pd.DataFrame | str | Path,
    out_dir: str | Path,
    model: Any = None,
    seed: int = 0,
    pca: Any = None,
    *,
    projection: str = "auto",
    max_points: int = 5000,
    n_repeats: int = protocols.N_REPEATS,
    invariance_pairs: Mapping[str, Any] | Callable[[Any], Mapping[str, Any] | None] | None = None,
    noise_twin: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """Evaluate latents against hardness ratios, PCA and the true parameters.

    Parameters
    ----------
    spectrum_set : SpectrumSet or path to one (``.h5``).
    latents_df : latent catalogue (DataFrame or parquet/FITS path) with ``spec_id`` and
        ``latent_*`` columns; rows are matched to the set on ``spec_id``. It must belong to
        the set (see :func:`xlatent.analysis.features.align`): a catalogue with ids the set
        lacks, repeated ids, no ``spec_id``, non-finite latents or ``net_counts_*`` that
        disagree with the set raises ``InputError`` naming both files. Spectra of the set
        without latents are left out (noted in ``metrics["notes"]``).
    out_dir : directory for ``metrics.json`` and the figures.
    model : the fitted latent model (``.reconstruct(set)``), for reconstruction quality.
    seed : seed for splits, subsamples and estimators (same seed, same metrics).
    pca : a fitted PCA baseline to use as the ``pca`` features (else fitted here on the
        training split).
    projection : ``auto`` (UMAP, else t-SNE), ``umap``, ``tsne`` or ``pca`` for the map.
    max_points : cap on rows for the expensive steps (HDBSCAN, MI, CV fits, embedding).
    n_repeats : repeats (clustering seeds; fresh splits unless the set fixes one) behind each
        clustering figure and its 95% interval (see :mod:`xlatent.analysis.clustering`).
    invariance_pairs : the same fresh sources folded through several responses (name ->
        SpectrumSet, optionally a ``noise_twin`` entry), or a function of the evaluated set
        returning them (so a caller can simulate them on the set's grid, or return None):
        adds ``response_invariance`` (:mod:`xlatent.analysis.invariance`; needs ``model``).
    noise_twin : a function giving an independent Poisson redraw of a subset of the set (the
        same sources; None when it cannot): adds ``latent_errors`` (coverage of the latent
        errors, :mod:`xlatent.analysis.latent_errors`). ``ood`` (the flag rate on the scored
        spectra) needs only ``model``.

    Returns the metrics dictionary also written to ``out_dir/metrics.json``. When the set has a
    ``split`` column ('train'/'test'), that split is used; otherwise a stratified 70/30 one.
    """
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s_in = _read_set(spectrum_set)
    lat = _read_latents(latents_df)
    set_index, z = align(s_in, lat, set_name=_name(spectrum_set, "SpectrumSet"),
                         latents_name=_name(latents_df, "latent table"))  # fmt: skip
    s = s_in if set_index.size == len(s_in) else s_in[set_index]
    meta = s.meta.reset_index(drop=True)
    ctx = Context(meta=meta, is_train=make_split(meta, seed), out_dir=out, seed=seed,
                  max_points=max_points)  # fmt: skip
    n_trained = _hold_out_trained(ctx, (model, pca), _name(spectrum_set, "SpectrumSet"))
    if set_index.size < len(s_in):
        ctx.notes.append(f"{len(s_in) - set_index.size} spectra have no latents; left out")
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "seed": seed}

    @contextlib.contextmanager
    def guarded(name: str) -> Iterator[None]:
        # One failing analysis is recorded and the others still run: a report with a gap
        # is more useful than none. The traceback goes to the log for debugging.
        t0 = time.perf_counter()
        try:
            yield
        except Exception as exc:
            log.warning("analysis %s failed:\n%s", name, traceback.format_exc())
            ctx.skip(name, f"failed: {type(exc).__name__}: {exc}")
        finally:
            timings[name] = round(time.perf_counter() - t0, 2)

    hard = hardness_table(s)
    counts_b = hard["net_counts_b"].to_numpy(dtype=np.float64)
    feature_sets, pca_model = {}, None
    with guarded("features"):
        feature_sets, pca_model = build_feature_sets(
            s, z, ctx.is_train, pca=pca, seed=seed, skip=ctx.skip, hardness=hard
        )
    metrics["data"] = _data_info(s, len(s_in), ctx, counts_b)
    metrics["data"]["n_excluded_trained"] = n_trained
    metrics["model"] = model_info(model)
    metrics["pca_model"] = model_info(pca_model)
    metrics["features"] = {n: feature_info(fs) for n, fs in feature_sets.items()}
    with guarded("reconstruction"):
        metrics["reconstruction"] = reconstruction.run(
            s, {"latent": model, "pca": pca_model}, ctx, counts_b
        )
    with single_thread():
        _analyses(metrics, feature_sets, z, ctx, hard, projection, guarded, n_repeats)
        with guarded("unusual"):  # the most unusual spectra, listed by the report
            metrics["unusual"] = evaluated_unusual(meta, lat, z, seed=seed)
    if invariance_pairs is not None:
        with guarded("response_invariance"):
            inv = _invariance(invariance_pairs, s, z, model, ctx)
            if inv is not None:
                metrics["response_invariance"] = inv
    latent_errors.run(model, s, ctx, noise_twin, guarded, metrics)
    metrics["headline"] = headline_rows(metrics, list(feature_sets))
    metrics["reference"] = REFERENCE
    metrics["subsampling"] = {
        "max_points": max_points,
        "applies_to": "k-means/GMM/HDBSCAN fits (max_points training rows; every row is then "
        "assigned), supervised probe, regression CV, interpretation search (max_points rows "
        "each), mutual information (at most 1500 rows); reconstruction (4 x max_points test "
        "rows); map (max_points/2 "
        "for UMAP/t-SNE)",
    }
    metrics["skipped"] = ctx.skipped
    metrics["notes"] = ctx.notes
    metrics["figures"] = ctx.figures
    timings["total"] = round(time.perf_counter() - t_start, 2)
    metrics["timings_s"] = timings
    return write_metrics(out, metrics)


def write_metrics(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write ``out_dir/metrics.json`` atomically; return what was written (NaN as None)."""
    import json

    from xlatent.core import atomic_write_text

    text = dumps(metrics)
    atomic_write_text(Path(out_dir) / METRICS_FILE, text)
    return json.loads(text)
