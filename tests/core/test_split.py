"""core.split: stratified, seeded, and grouped by source."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlatent.core.split import split_column, stratified_pick, train_indices
from xlatent.physics.simulator import simulate


def test_simulated_split_is_stratified_and_seeded() -> None:
    s = simulate(400, seed=2, class_mix="balanced", test_fraction=0.2)
    split = s.meta["split"]
    assert set(split) == {"train", "test"}
    for _, rows in s.meta.groupby("source_class"):
        assert int((rows["split"] == "test").sum()) == round(0.2 * len(rows))
    again = simulate(400, seed=2, class_mix="balanced", test_fraction=0.2)
    assert again.meta["split"].tolist() == split.tolist()
    other = simulate(400, seed=3, class_mix="balanced", test_fraction=0.2)
    assert other.meta["split"].tolist() != split.tolist()


def test_one_spectrum_per_source_is_the_plain_stratified_pick() -> None:
    meta = pd.DataFrame({"name": "", "source_class": np.repeat(list("ABCD"), [50, 30, 12, 8])})
    test = split_column(meta, 0.25, seed=9) == "test"
    assert np.array_equal(
        test, stratified_pick(meta["source_class"], 0.25, np.random.default_rng(9))
    )


def test_spectra_of_one_source_never_straddle_the_split() -> None:
    rng = np.random.default_rng(0)
    names = rng.choice([f"2CXO J{i:04d}" for i in range(60)], size=400)
    meta = pd.DataFrame({"name": names, "source_class": [n[-1] for n in names]})
    for seed in range(5):
        split = pd.Series(split_column(meta, 0.3, seed=seed))
        sides = split.groupby(meta["name"]).nunique()
        assert (sides == 1).all()
        share = (split == "test").mean()
        assert 0.15 < share < 0.45  # whole sources, so only roughly the fraction


def test_train_indices_any_case_and_without_a_split_column() -> None:
    meta = pd.DataFrame({"split": ["train", "test", "TRAIN", "Train ", None]})
    np.testing.assert_array_equal(train_indices(meta), [0, 2])
    assert train_indices(pd.DataFrame({"x": [1, 2]})).size == 0
