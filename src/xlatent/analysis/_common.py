"""Helpers shared by the analyses: the context, splits, subsampling, JSON and figures."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.split import stratified_pick
from xlatent.core.vocabulary import (
    CLASSES,
    REFERENCE_BACC_8CLASS,
    REFERENCE_BACC_AGN_VS_COMPACT,
    REFERENCE_STUDY,
)

#: The reference study's clustering results (balanced accuracy) quoted beside ours.
REFERENCE = {
    "bacc_8class": REFERENCE_BACC_8CLASS,
    "bacc_agn_vs_compact": REFERENCE_BACC_AGN_VS_COMPACT,
    "source": f"{REFERENCE_STUDY} (CSC spectra, 8 latents)",
}


@dataclass
class Context:
    """What every analysis receives: aligned metadata, the split, and bookkeeping."""

    meta: pd.DataFrame  # aligned with the feature rows (spec_id order of the evaluation)
    is_train: np.ndarray  # bool (n,)
    out_dir: Path
    seed: int = 0
    max_points: int = 5000  # cap for the expensive (super-linear or per-fit) steps
    skipped: list[dict[str, str]] = field(default_factory=list)
    figures: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, analysis: str, reason: str) -> None:
        """Record that ``analysis`` did not run (or ran partly) and why."""
        self.skipped.append({"analysis": analysis, "reason": reason})

    def labels(self) -> np.ndarray:
        """``source_class`` as str, "" where unknown or outside the eight classes."""
        return class_labels(self.meta)

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])


def class_labels(meta: pd.DataFrame) -> np.ndarray:
    """``meta["source_class"]`` as str, "" where unknown or outside the eight classes."""
    if "source_class" not in meta:
        return np.full(len(meta), "", dtype=object)
    lab = meta["source_class"].fillna("").astype(str).to_numpy(dtype=object)
    return np.where(np.isin(lab, CLASSES), lab, "")


def make_split(meta: pd.DataFrame, seed: int, test_fraction: float = 0.3) -> np.ndarray:
    """Training mask: meta's ``split`` column when present, else stratified by class and
    grouped by source.

    The fallback keeps every spectrum of one source (same non-empty ``name``, e.g. the
    per-observation spectra of one CSC source) on the same side: sources are drawn with
    :func:`stratified_pick` over the class of their first spectrum, in order of first
    appearance. When every spectrum is its own source this is the per-spectrum stratified
    split of earlier versions, draw for draw.
    """
    if "split" in meta:
        split = meta["split"].astype(str).str.lower().to_numpy()
        if (split == "train").any() and (split == "test").any():
            return split == "train"
    rng = np.random.default_rng([seed, 7])
    n = len(meta)
    if "source_class" in meta:
        groups = meta["source_class"].fillna("").astype(str).to_numpy(dtype=object)
    else:
        groups = np.full(n, "", dtype=object)
    names = meta["name"].fillna("").astype(str).to_numpy() if "name" in meta else np.full(n, "")
    keys = np.where(names == "", np.char.add("\0row", np.arange(n).astype(str)), names)
    first, inverse = np.unique(keys, return_index=True, return_inverse=True)[1:]
    order = np.argsort(first, kind="stable")  # sources in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    test_sources = stratified_pick(groups[first[order]], test_fraction, rng)
    return ~test_sources[rank[inverse.reshape(-1)]]


def subsample(idx: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``k`` of the indices ``idx`` (sorted), uniformly without replacement."""
    idx = np.asarray(idx)
    if idx.size <= k:
        return idx
    return np.sort(rng.choice(idx, size=k, replace=False))


def safe_log10(x: Any, floor: float | None = None) -> np.ndarray:
    """log10 with NaN for non-positive values (or flooring them at ``floor``)."""
    a = np.asarray(x, dtype=np.float64)
    if floor is not None:
        return np.log10(np.maximum(a, floor))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > 0, np.log10(np.where(a > 0, a, 1.0)), np.nan)


def jsonable(obj: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and non-finite floats into strict JSON values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/inf
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(metrics: dict[str, Any]) -> str:
    """Strict JSON text of ``metrics`` (NaN -> null)."""
    return json.dumps(jsonable(metrics), indent=2, allow_nan=False)


def get_metric(metrics: dict[str, Any], dotted: str, default: Any = None) -> Any:
    """``get_metric(m, "clustering.latent.bacc_8class")`` = ``m["clustering"]["latent"][...]``."""
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def save_figure(ctx: Context, fig: Any, name: str, caption: str, section: str) -> str:
    """Save ``fig`` as ``out_dir/name`` (PNG, atomically), record its caption, close it."""
    import matplotlib.pyplot as plt

    from xlatent.core import atomic_path

    path = ctx.out_dir / name
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    ctx.figures.append({"file": name, "caption": caption, "section": section})
    return name


def single_thread() -> Any:
    """Context limiting OpenMP and BLAS to one thread.

    The analyses fit many small models (a few thousand rows, <= 20 columns); there, thread
    start-up and spin-waiting cost far more than they save: on 2 busy cores k-means on 300 rows
    took 0.35 s with 2 OpenMP threads and 0.007 s with one.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)
