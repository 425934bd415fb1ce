"""Stratified random selection: the one helper behind every train/test split."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def stratified_pick(
    groups: Any, fraction: float, rng: np.random.Generator, round_up: bool = False
) -> np.ndarray:
    """Boolean mask picking ``fraction`` of the rows of every group, at random.

    ``groups``: one label per row (array or Series). Groups are visited in sorted order; in
    each, the rows are shuffled with ``rng`` and the first ``round(fraction * size)`` (or the
    ceiling, ``round_up``) are picked. Rows whose label is missing (None/NaN) belong to no
    group and are never picked. The result depends only on the labels, ``fraction`` and the
    state of ``rng``.
    """
    labels = pd.Series(np.asarray(groups, dtype=object))
    picked = np.zeros(len(labels), dtype=bool)
    for idx in labels.groupby(labels).indices.values():
        idx = rng.permutation(idx)
        k = math.ceil(fraction * idx.size) if round_up else int(round(fraction * idx.size))
        picked[idx[:k]] = True
    return picked


def split_column(
    meta: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0, by: str = "source_class"
) -> np.ndarray:
    """A ``split`` column ('train'/'test') for a set's ``meta``: stratified by ``by``, grouped
    by source.

    Spectra of one source (same non-empty ``name``, e.g. per-observation CSC spectra of one
    2CXO source) always fall on the same side, so no source is on both sides of a split.
    Sources are picked with :func:`stratified_pick` over their first spectrum's ``by`` label,
    in order of first appearance: when every spectrum is its own source (simulated sets), the
    result is ``stratified_pick(meta[by], test_fraction, default_rng(seed))``.
    """
    n = len(meta)
    names = meta["name"].astype(str).to_numpy() if "name" in meta else np.full(n, "")
    labels = meta[by].to_numpy() if by in meta else np.full(n, "", dtype=object)
    # An unnamed spectrum is its own source.
    keys = np.where(names == "", np.char.add("\0row", np.arange(n).astype(str)), names)
    first, group = np.unique(keys, return_index=True, return_inverse=True)[1:]
    order = np.argsort(first, kind="stable")  # groups in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    test_groups = stratified_pick(labels[first[order]], test_fraction, np.random.default_rng(seed))
    return np.where(test_groups[rank[group]], "test", "train").astype(object)


def train_indices(meta: pd.DataFrame) -> np.ndarray:
    """Row indices of the spectra a ``split`` column marks 'train' (any case); empty when
    the column is absent."""
    if "split" not in meta:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(meta["split"].astype(str).str.lower().to_numpy() == "train")


__all__ = ["split_column", "stratified_pick", "train_indices"]
