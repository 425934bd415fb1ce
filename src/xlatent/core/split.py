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


__all__ = ["stratified_pick"]
