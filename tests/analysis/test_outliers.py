"""analysis.outliers: unusualness from ood_score, else from the latent density."""

from __future__ import annotations

import numpy as np
import pandas as pd

from xlatent.analysis.outliers import (
    density_score,
    evaluated_unusual,
    most_unusual,
    unusual_scores,
)


def blobs(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (6, 8))
    return centres[rng.integers(0, 6, n)] + rng.normal(0, 1, (n, 8))


def test_isolated_points_score_highest_even_against_a_sample() -> None:
    z = blobs()
    z[[7, 1500]] = [40.0] * 8, [-40.0] * 8  # two spectra unlike any other
    z[99, 0] = np.nan
    score = density_score(z, n_reference=500)
    assert np.isnan(score[99]) and np.isfinite(np.delete(score, 99)).all()
    top = np.argsort(-np.nan_to_num(score, nan=-np.inf))[:2]
    assert set(top) == {7, 1500}
    # A row of the reference sample is not its own neighbour: duplicates of one point are
    # as dense as their count says, not infinitely dense.
    assert np.nanmin(score) > -12
    np.testing.assert_array_equal(score, density_score(z, n_reference=500))  # seeded


def test_ood_score_is_preferred_when_the_catalogue_has_it() -> None:
    z = blobs(200)
    cat = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(8)])
    cat.insert(0, "spec_id", [f"s{i}" for i in range(200)])
    _, name, _ = unusual_scores(cat)
    assert name == "latent_knn_distance"
    cat["ood_score"] = np.linspace(0, 1, 200)
    score, name, desc = unusual_scores(cat)
    assert name == "ood_score" and "out-of-distribution" in desc
    table, _, _ = most_unusual(cat, n=5)
    assert table["spec_id"].tolist() == ["s199", "s198", "s197", "s196", "s195"]
    cat["ood_score"] = np.nan  # present but empty: the density score stands in
    assert unusual_scores(cat)[1] == "latent_knn_distance"


def test_evaluated_unusual_matches_ood_score_by_spec_id() -> None:
    z = blobs(100)
    ids = [f"s{i}" for i in range(100)]
    meta = pd.DataFrame({"spec_id": ids, "source_class": "AGN", "net_counts_b": np.arange(100.0)})
    # the catalogue in reversed order: s0 has score 99
    lat = pd.DataFrame({"spec_id": ids[::-1], "ood_score": np.arange(100.0)})
    u = evaluated_unusual(meta, lat, z, n=3)
    assert u["score"] == "ood_score" and u["n_scored"] == 100
    assert [r["spec_id"] for r in u["rows"]] == ["s0", "s1", "s2"]
    assert u["rows"][0]["score"] == 99.0 and u["rows"][0]["net_counts_b"] == 0.0
