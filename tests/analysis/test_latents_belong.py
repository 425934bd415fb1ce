"""evaluate refuses a latent catalogue that does not belong to the set, naming both files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xlatent.analysis import evaluate
from xlatent.analysis.features import align
from xlatent.core import InputError
from xlatent.model.catalog import latent_catalog, write_latents
from xlatent.physics.simulator import simulate

from .synth import make_set, separated_latents


def _latents(s, seed: int = 0) -> pd.DataFrame:
    return latent_catalog(s, np.random.default_rng(seed).normal(size=(len(s), 4)))


def test_two_simulated_sets_have_disjoint_ids_and_evaluate_refuses_the_swap(tmp_path) -> None:
    a, b = simulate(30, seed=1), simulate(30, seed=2)
    assert set(a.meta["spec_id"]).isdisjoint(b.meta["spec_id"])
    set_a = a.write(tmp_path / "a.h5")
    lat_b = write_latents(_latents(b), tmp_path / "b_latents.parquet")
    with pytest.raises(InputError) as info:
        evaluate(set_a, lat_b, tmp_path / "eval")
    msg = str(info.value)
    assert str(lat_b) in msg and str(set_a) in msg and "30 of its 30" in msg
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_same_ids_but_other_spectra_are_refused(tmp_path) -> None:
    """Sets made before ids carried a digest shared ids (sim000001 in every set): the
    catalogue's copied net counts show it came from other spectra."""
    a, b = simulate(30, seed=1), simulate(30, seed=2)
    b.meta["spec_id"] = a.meta["spec_id"].to_numpy()
    with pytest.raises(InputError, match="net_counts_. differs for"):
        align(a, _latents(b), set_name="a.h5", latents_name="b.parquet")


def test_catalogue_of_a_subset_is_accepted() -> None:
    s = make_set(n=40)
    lat = separated_latents(s).iloc[::-1].iloc[:25]
    idx, z = align(s, lat)
    assert idx.size == 25
    ids = s.meta["spec_id"].to_numpy()[idx]
    np.testing.assert_array_equal(z, lat.set_index("spec_id").loc[ids, lat.columns[1:]].to_numpy())


@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (lambda d: d.drop(columns="spec_id"), "no spec_id column"),
        (lambda d: d.assign(spec_id=[d["spec_id"].iloc[0]] * len(d)), "more than once"),
        (lambda d: d.assign(latent_1=np.where(np.arange(len(d)) == 3, np.nan, 0.0)), "not finite"),
        (lambda d: d.assign(latent_0="x"), "not numbers"),
        (lambda d: d.drop(columns=[c for c in d if c.startswith("latent_")]), "no latent_"),
        (lambda d: pd.concat([d, d.iloc[:1].assign(spec_id="stranger")]), "1 of its 41"),
    ],
)
def test_damaged_catalogue_is_refused_naming_both(damage, phrase) -> None:
    s = make_set(n=40)
    with pytest.raises(InputError) as info:
        align(s, damage(separated_latents(s)), set_name="set.h5", latents_name="lat.parquet")
    msg = str(info.value)
    assert msg.startswith("lat.parquet: ") and "set.h5" in msg and phrase in msg
