"""core.vocabulary and core.split: the project's facts in one place, one stratified pick."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlatent.core import EnergyGrid
from xlatent.core.split import stratified_pick
from xlatent.core.vocabulary import (
    CLASSES,
    CLASSES_BY_TD_SIZE,
    COMPACT,
    CSC_BAND_EDGES_KEV,
    CSC_BANDS_KEV,
    TD_CLASS_COUNTS,
    latent_columns,
    latent_name,
)


def test_classes_groupings_and_bands() -> None:
    assert len(CLASSES) == len(set(CLASSES)) == 8
    assert set(CLASSES_BY_TD_SIZE) == set(CLASSES) == set(TD_CLASS_COUNTS)
    assert set(COMPACT) < set(CLASSES) and "AGN" not in COMPACT
    assert CSC_BAND_EDGES_KEV == (0.5, 1.2, 2.0, 7.0)
    assert CSC_BANDS_KEV["b"] == (CSC_BANDS_KEV["s"][0], CSC_BANDS_KEV["h"][1])
    # Every band edge inside the default grid is a bin edge.
    edges = EnergyGrid.default().edges_kev
    assert all(np.isclose(edges, e).any() for e in CSC_BAND_EDGES_KEV)


def test_latent_columns_in_index_order() -> None:
    df = pd.DataFrame(columns=["spec_id", latent_name(10), "latent_x", latent_name(2), "latent_0"])
    assert latent_columns(df) == ["latent_0", "latent_2", "latent_10"]


def test_stratified_pick() -> None:
    groups = np.array(["a"] * 10 + ["b"] * 5 + [None] * 4, dtype=object)
    pick = stratified_pick(groups, 0.3, np.random.default_rng(0))
    assert pick[:10].sum() == 3 and pick[10:15].sum() == 2 and not pick[15:].any()
    half = stratified_pick(groups, 0.5, np.random.default_rng(0), round_up=True)
    assert half[:10].sum() == 5 and half[10:15].sum() == 3
    again = stratified_pick(groups, 0.3, np.random.default_rng(0))
    assert np.array_equal(pick, again)
