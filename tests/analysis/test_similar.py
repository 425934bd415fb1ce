"""analysis.similar: nearest neighbours in latent space, with and without latent errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.analysis.similar import LatentIndex, plot_similar, similar
from xlatent.core import InputError

from .synth import make_set


def catalogue(n: int = 600, d: int = 8, seed: int = 0, errors: bool = False) -> pd.DataFrame:
    """Latents on very different scales per dimension (so standardising matters)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d)) * np.geomspace(0.01, 100.0, d)
    df = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(d)])
    df.insert(0, "spec_id", [f"s{i:04d}" for i in range(n)])
    df["name"] = [f"2CXO J{i // 2:06d}" for i in range(n)]  # two spectra per source
    df["net_counts_b"] = rng.uniform(10, 1000, n)
    if errors:
        # heterogeneous errors: up to a factor 3 between spectra, in each dimension's scale
        e = rng.uniform(0.1, 0.3, (n, d)) * np.geomspace(0.01, 100.0, d)
        for i in range(d):
            df[f"latent_{i}_err"] = e[:, i]
    return df


def brute_force(df: pd.DataFrame, row: int, k: int, errors: bool) -> np.ndarray:
    cols = [f"latent_{i}" for i in range(8)]
    z = df[cols].to_numpy()
    if errors:
        e = df[[c + "_err" for c in cols]].to_numpy()
        d = np.sqrt((((z - z[row]) ** 2) / (e**2 + e[row] ** 2)).sum(1))
    else:
        d = np.sqrt((((z - z[row]) / z.std(0)) ** 2).sum(1))
    d[row] = np.inf
    return np.argsort(d, kind="stable")[:k]


@pytest.mark.parametrize("errors", [False, True])
def test_neighbours_are_the_exact_nearest(errors: bool) -> None:
    df = catalogue(errors=errors)
    index = LatentIndex(df)
    assert index.has_errors is errors
    for row in (0, 17, 333, 599):
        t = index.query(row, k=10)
        assert t["rank"].tolist() == list(range(11))
        assert t["catalog_row"].iloc[0] == row and t["distance"].iloc[0] == 0.0
        np.testing.assert_array_equal(t["catalog_row"].to_numpy()[1:],
                                      brute_force(df, row, 10, errors))  # fmt: skip
        key = "distance_sigma" if errors else "distance"
        assert np.all(np.diff(t[key].to_numpy()) >= 0)
        assert ("p_consistent" in t) is errors


def test_errors_change_the_ranking_and_give_a_probability() -> None:
    # Query at 0 with small errors; A is close but very precisely elsewhere, B farther but
    # uncertain enough to be consistent: with errors B ranks first, without A does.
    z = np.zeros((40, 8))
    z[1, 0], z[2, 0] = 1.0, 2.0
    z[3:, :] = 50.0 + np.arange(37)[:, None]  # the rest far away
    e = np.full((40, 8), 0.1)
    e[2] = 2.0
    df = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(8)])
    df.insert(0, "spec_id", [f"r{i}" for i in range(40)])
    without = similar(df, "r0", k=2)
    assert without["spec_id"].tolist() == ["r0", "r1", "r2"]
    for i in range(8):
        df[f"latent_{i}_err"] = e[:, i]
    with_err = similar(df, "r0", k=2)
    assert with_err["spec_id"].tolist() == ["r0", "r2", "r1"]
    np.testing.assert_allclose(with_err["distance_sigma"][1:], [2 / np.sqrt(4.01),
                                                                1 / np.sqrt(0.02)])  # fmt: skip
    assert with_err["p_consistent"][1] > 0.9 and with_err["p_consistent"][2] < 1e-6
    assert "combined latent errors" in with_err.attrs["metric"]


def test_unusable_errors_fall_back_sensibly() -> None:
    df = catalogue(errors=True)
    df.loc[5, "latent_3_err"] = np.nan  # one bad entry: the column's median stands in
    df.loc[6, "latent_2_err"] = 0.0
    index = LatentIndex(df)
    assert index.has_errors and np.isfinite(index.err).all() and (index.err > 0).all()
    assert index.err[5, 3] == np.median(df["latent_3_err"].dropna())
    # an incomplete set of error columns is not used at all
    assert not LatentIndex(df.drop(columns=["latent_7_err"])).has_errors


def test_locate_by_spec_id_or_csc_name() -> None:
    df = catalogue()
    index = LatentIndex(df)
    assert index.locate("s0042") == (42, "")
    # A CSC name, any case, with or without the 2CXO prefix: the brighter spectrum is used.
    brighter = 10 if df.net_counts_b[10] > df.net_counts_b[11] else 11
    for ident in ("2CXO J000005", "2cxo j000005", "J000005"):
        row, note = index.locate(ident)
        assert row == brighter and "has 2 spectra" in note and df.spec_id[brighter] in note
    t = similar(df, "J000005", k=3, index=index)
    assert t.attrs["query"] == df.spec_id[brighter] and "has 2 spectra" in t.attrs["note"]
    assert t["same_source"].iloc[0]
    with pytest.raises(InputError, match="no spectrum with spec_id or name 'nope'"):
        index.locate("nope")


def test_bad_catalogues_are_refused() -> None:
    df = catalogue(n=20)
    with pytest.raises(InputError, match="no latent_<i> columns"):
        LatentIndex(df[["spec_id", "name"]])
    with pytest.raises(InputError, match="no spec_id"):
        LatentIndex(df.drop(columns=["spec_id"]))
    df.loc[3, "latent_0"] = np.nan  # left out of the index, refused as a query
    index = LatentIndex(df)
    assert index.n_unindexed == 1
    assert 3 not in index.query(0, k=19)["catalog_row"].tolist()
    with pytest.raises(InputError, match="s0003 has non-finite latents"):
        index.query(3)
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.query(0, k=0)
    assert len(index.query(0, k=50)) == 19  # all 18 other finite rows + the query


def test_plot_similar_draws_the_spectra_in_the_set(tmp_path: Path) -> None:
    s = make_set(80)
    lat = s.meta[["spec_id"]].copy()
    z = np.random.default_rng(0).normal(size=(80, 8))
    for i in range(8):
        lat[f"latent_{i}"] = z[:, i]
    table = similar(lat, "x00003", k=5)
    path, missing = plot_similar(s, table, tmp_path / "sim.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and missing == []
    _, missing = plot_similar(s[10:], table, tmp_path / "sim2.png")
    assert missing == [sid for sid in table.spec_id if int(sid[1:]) < 10]
