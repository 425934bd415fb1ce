"""Each analysis on inputs with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.analysis import CLASSES, interpretation, reconstruction, regression, timedomain
from xlatent.analysis import clustering as C
from xlatent.analysis._common import Context, dumps, get_metric, make_split
from xlatent.analysis.features import (
    FeatureSet,
    align,
    hardness_table,
    photon_flux_b,
    spectrum_table,
    standardise,
)
from xlatent.analysis.probe import by_counts, probe_feature_set
from xlatent.core import SpectrumSet

from .synth import FlatModel, OracleModel, make_set


def _ctx(meta: pd.DataFrame, tmp_path: Path, max_points: int = 2000) -> Context:
    return Context(meta=meta, is_train=make_split(meta, 0), out_dir=tmp_path,
                   max_points=max_points)  # fmt: skip


def _labelled_meta(n: int) -> pd.DataFrame:
    cls = [CLASSES[i % len(CLASSES)] for i in range(n)]
    return pd.DataFrame({"spec_id": [f"r{i}" for i in range(n)], "source_class": cls})


def test_prior_map_beats_majority_for_rare_class() -> None:
    # Cluster 1 holds 30 AGN and 10 of the 12 NS: majority says AGN, the prior rule says NS.
    clusters = np.array([0] * 60 + [1] * 40 + [0] * 2)
    labels = np.array(["AGN"] * 60 + ["AGN"] * 30 + ["NS"] * 10 + ["NS"] * 2, dtype=object)
    prior, _ = C.learn_map(clusters, labels, "prior")
    majority, _ = C.learn_map(clusters, labels, "majority")
    assert prior == {0: "AGN", 1: "NS"}
    assert majority == {0: "AGN", 1: "AGN"}


def test_separated_clusters_give_perfect_balanced_accuracy(tmp_path: Path) -> None:
    n = 800
    meta = _labelled_meta(n)
    rng = np.random.default_rng(0)
    k = np.arange(n) % len(CLASSES)
    x = 15.0 * np.eye(len(CLASSES))[k] + rng.normal(0, 0.3, (n, len(CLASSES)))
    ctx = _ctx(meta, tmp_path)
    res = C.cluster_feature_set(FeatureSet("sep", x, [], "", 8), ctx, k_grid=(8, 16))
    assert res["bacc_8class"] == 1.0
    assert res["bacc_agn_vs_compact"] == 1.0
    probe = probe_feature_set(FeatureSet("sep", x, [], "", 8), ctx)
    assert probe["bacc_8class"] > 0.95


def test_probe_folds_in_parallel_processes_give_the_same_result(tmp_path, monkeypatch) -> None:
    import xlatent.analysis.probe as P

    n = 600
    meta = _labelled_meta(n)
    rng = np.random.default_rng(3)
    k = np.arange(n) % len(CLASSES)
    x = 1.5 * np.eye(len(CLASSES))[k] + rng.normal(0, 1.0, (n, len(CLASSES)))
    fs = FeatureSet("noisy", x, [], "", 8)
    seq = P.probe_feature_set(fs, _ctx(meta, tmp_path))
    monkeypatch.setattr(P, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    assert P.probe_jobs(n, 5) == 2
    par = P.probe_feature_set(fs, _ctx(meta, tmp_path))
    assert 0.2 < seq["bacc_8class"] < 0.95  # neither trivial nor chance: a real test
    for key in ("bacc_8class", "bacc_agn_vs_compact", "bacc_8class_ci95"):
        assert par[key] == seq[key]
    for task in seq["_scored"]:
        np.testing.assert_array_equal(par["_scored"][task].correct, seq["_scored"][task].correct)


def test_random_features_give_chance(tmp_path: Path) -> None:
    n = 2400
    meta = _labelled_meta(n)
    x = np.random.default_rng(1).normal(size=(n, 4))
    ctx = _ctx(meta, tmp_path)
    res = C.cluster_feature_set(FeatureSet("rnd", x, [], "", 4), ctx, k_grid=(8, 16))
    assert abs(res["bacc_8class"] - 1 / 8) < 0.07
    assert abs(res["bacc_agn_vs_compact"] - 0.5) < 0.15


def test_balanced_accuracy_is_mean_recall() -> None:
    y = np.array(["a"] * 90 + ["b"] * 10, dtype=object)
    assert C.balanced_accuracy(y, np.array(["a"] * 100, dtype=object)) == 0.5


def test_standardise_imputes_and_flags() -> None:
    raw = np.array([[1.0, 5.0], [np.nan, 6.0], [3.0, 7.0], [5.0, 8.0]])
    x, names, info = standardise(raw, ["a", "b"])
    assert names == ["a", "a_missing", "b"]
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    assert info["n_missing"] == {"a": 1}


def test_align_joins_on_spec_id() -> None:
    s = make_set(40, truth=False)
    lat = pd.DataFrame({"spec_id": s.meta["spec_id"][::-1].to_numpy()[:30],
                        "latent_0": np.arange(30.0)})  # fmt: skip
    idx, z = align(s, lat)
    assert idx.size == 30
    ids = s.meta["spec_id"].to_numpy()[idx]
    expect = lat.set_index("spec_id").loc[ids, "latent_0"].to_numpy()
    np.testing.assert_array_equal(z[:, 0], expect)


def test_regression_recovers_a_function_and_not_noise(tmp_path: Path) -> None:
    s = make_set(400)
    hard = hardness_table(s)
    ctx = _ctx(s.meta, tmp_path)
    q = regression.quantities(s.meta, hard)
    good = FeatureSet("good", np.column_stack([q["gamma"], np.log10(s.meta["truth_nh_1e22"])]),
                      [], "", 2)  # fmt: skip
    noise = FeatureSet("noise", np.random.default_rng(0).normal(size=(400, 2)), [], "", 2)
    out = regression.run({"good": good, "noise": noise}, good.X, ctx, hard)
    assert out["regression"]["good"]["gamma"] > 0.95
    assert out["regression"]["good"]["log_nh"] > 0.95
    assert out["regression"]["noise"]["gamma"] < 0.15
    assert out["correlations"]["spearman"]["gamma"][0] > 0.99
    # log kT is only defined for half of the rows: it is fitted on those alone.
    assert out["regression_info"]["n_rows"]["log_kt"] == int(s.meta["truth_kt_kev"].notna().sum())


def test_interpretation_finds_the_colour(tmp_path: Path) -> None:
    s = make_set(400, truth=False)
    hard = hardness_table(s)
    c = np.maximum(hard[["net_counts_s", "net_counts_h"]].to_numpy(), 1.0)
    z = np.column_stack([np.log10(c[:, 1] / c[:, 0]), np.random.default_rng(0).normal(size=400)])
    out = interpretation.run(z, _ctx(s.meta, tmp_path), hard)
    best = out["top_expressions"]["latent_0"][0]
    assert best["expression"] == "log(CS/CH)"
    assert best["rho"] == pytest.approx(-1.0)
    assert abs(out["top_expressions"]["latent_1"][0]["rho"]) < 0.3


def test_mutual_information_sees_dependence(tmp_path: Path) -> None:
    n = 600
    rng = np.random.default_rng(0)
    var = rng.uniform(0, 1, n)
    meta = pd.DataFrame({"spec_id": [f"v{i}" for i in range(n)], "var_prob_b": var})
    dep = FeatureSet("dep", np.column_stack([var + rng.normal(0, 0.05, n)]), ["a"], "", 1)
    ind = FeatureSet("ind", rng.normal(size=(n, 1)), ["a"], "", 1)
    ctx = _ctx(meta, tmp_path)
    out = timedomain.run({"dep": dep, "ind": ind}, ctx)
    assert out["dep"]["var_prob_b"] > 0.5
    assert out["ind"]["var_prob_b"] < 0.1
    assert any(s["analysis"] == "mutual_information.var_index_b" for s in ctx.skipped)


def test_reconstruction_deviance_ratio(tmp_path: Path) -> None:
    s = make_set(200)
    ctx = _ctx(s.meta, tmp_path)
    counts_b = hardness_table(s)["net_counts_b"].to_numpy()
    out = reconstruction.run(s, {"latent": OracleModel(), "pca": FlatModel()}, ctx, counts_b)
    assert out["latent"]["deviance_ratio"] == pytest.approx(1.0)
    assert out["pca"]["deviance_ratio"] > 2.0
    assert len(out["latent"]["per_counts_decile"]) == 10
    assert set(out["latent"]["per_class"]) == set(CLASSES)
    assert (tmp_path / "reconstruction_examples.png").is_file()


def test_json_is_strict_and_dotted_access_works() -> None:
    m = {"a": {"b": np.float64(np.nan), "c": np.arange(2)}}
    text = dumps(m)
    assert "NaN" not in text
    assert get_metric({"a": {"b": 1}}, "a.b") == 1
    assert get_metric({"a": {}}, "a.b", "none") == "none"


def test_spectrum_table_rebins_the_normalised_net_spectrum() -> None:
    s = make_set(16)  # 32 bins
    s.counts[:] = 5.0
    s.background[:] = 0.0
    x, names = spectrum_table(s, rebin=5)  # 32 bins -> 7 coarse bins, the last one of 2
    assert x.shape == (16, 8) and len(names) == 8 and names[-1] == "log_net_counts"
    share = np.array([5, 5, 5, 5, 5, 5, 2]) / 32.0
    assert np.allclose(x[:, :7], np.log1p(7 * share))
    assert np.allclose(x[:, 7], np.log10(160.0))
    assert names[0] == f"shape_{s.grid.edges_kev[0]:.2f}kev"


def test_photon_flux_is_band_counts_over_area_and_exposure() -> None:
    s = make_set(6)
    s.background[:] = 0.0
    s.counts[:] = 0.0
    e = s.grid.centers_kev
    band = (e > 0.5) & (e < 7.0)
    s.counts[:, band] = 10.0  # 10 net counts per bin inside 0.5-7 keV, none outside
    s.effective_area_cm2[:] = 200.0
    s.effective_area_cm2[:, ~band] = 0.0  # the area outside the band must not count
    s.effective_area_cm2[3] = 50.0  # four times less area: four times the flux
    s.exposure_s[:] = 1e4
    s.exposure_s[5] = 2e4
    f = photon_flux_b(s)
    n_b = 10.0 * band.sum()
    assert f[0] == pytest.approx(n_b / (1e4 * 200.0), rel=0.02)
    assert f[3] == pytest.approx(4 * f[0]) and f[5] == pytest.approx(f[0] / 2)
    assert np.allclose(hardness_table(s)["photflux_b"], f)
    # Near-zero area at a band edge (the contaminated soft end) does not blow the flux up.
    s.effective_area_cm2[1, np.flatnonzero(band)[0]] = 1e-4
    assert f[1] == pytest.approx(photon_flux_b(s)[1], rel=0.05)


def test_probe_accuracy_by_counts_bins() -> None:
    rng = np.random.default_rng(3)
    n = 1000
    y = np.array([CLASSES[i % 8] for i in range(n)], dtype=object)
    counts = rng.uniform(10, 1e4, n)
    # Right for the brightest fifth, a random guess elsewhere.
    guess = np.array(CLASSES, dtype=object)[rng.integers(0, 8, n)]
    pred = np.where(counts >= np.quantile(counts, 0.8), y, guess)
    rows = by_counts(y, pred, counts)
    assert len(rows) == 5 and sum(r["n"] for r in rows) == n
    assert rows[-1]["bacc"] == 1.0
    assert all(abs(r["bacc"] - 1 / 8) < 0.08 for r in rows[:4])
    assert rows[0]["counts_lo"] == counts.min() and rows[-1]["counts_hi"] == counts.max()
    assert by_counts(y[:3], pred[:3], counts[:3]) == []


def test_fallback_split_keeps_a_source_on_one_side() -> None:
    from xlatent.analysis._common import make_split

    rng = np.random.default_rng(3)
    n_src = 60
    names = [f"2CXO J{i:06d}" for i in range(n_src) for _ in range(i % 4 + 1)]
    cls = {nm: ["AGN", "YSO", "CV"][i % 3] for i, nm in enumerate(dict.fromkeys(names))}
    meta = pd.DataFrame({"name": names, "source_class": [cls[nm] for nm in names]})
    meta = meta.iloc[rng.permutation(len(meta))].reset_index(drop=True)
    for seed in range(5):
        train = make_split(meta, seed)
        per_source = pd.Series(train).groupby(meta["name"]).nunique()
        assert (per_source == 1).all()  # no source on both sides
        assert 0.5 < train.mean() < 0.9
        assert set(meta["source_class"][~train]) == {"AGN", "YSO", "CV"}
    # every spectrum its own source (no names): the per-spectrum stratified split as before
    from xlatent.core.split import stratified_pick

    solo = meta.drop(columns="name")
    expect = ~stratified_pick(solo["source_class"], 0.3, np.random.default_rng([4, 7]))
    np.testing.assert_array_equal(make_split(solo, 4), expect)
    # a split column wins
    fixed = meta.assign(split=np.where(np.arange(len(meta)) % 2, "train", "test"))
    np.testing.assert_array_equal(make_split(fixed, 0), np.arange(len(meta)) % 2 == 1)


def test_catalogue_hardness_and_nh_units() -> None:
    from xlatent.analysis.features import hardness_choice

    s = make_set(40, truth=False)
    # a set written before the rename: count ratios under the CSC names, no hr_counts_*
    legacy = s.meta.rename(columns={f"hr_counts_{c}": f"hard_{c}" for c in ("hm", "hs", "ms")})
    s.meta = legacy
    h = hardness_table(s)
    assert "hard_hm" not in h and hardness_choice(h) == (
        ["hr_counts_hm", "hr_counts_hs", "hr_counts_ms"], "counts")  # fmt: skip
    # catalogue values on fewer than half the rows: the count ratios are used
    s = make_set(40, truth=False)
    s.meta["hard_hm"] = s.meta["hard_hs"] = s.meta["hard_ms"] = np.nan
    s.meta.loc[:10, ["hard_hm", "hard_hs", "hard_ms"]] = 0.3
    assert hardness_choice(hardness_table(s))[1] == "counts"
    s.meta.loc[:25, ["hard_hm", "hard_hs", "hard_ms"]] = 0.3
    h = hardness_table(s)
    assert hardness_choice(h)[1] == "catalog"
    # powlaw_nh is in the CSC's 1e20 cm^-2: 1 -> log10 N_H = 20
    s.meta["powlaw_nh"] = 1.0
    s.meta.loc[0, "powlaw_nh"] = 300.0
    q = regression.quantities(s.meta, h)
    assert q["catalog_log_nh"][1] == pytest.approx(20.0)
    assert q["catalog_log_nh"][0] == pytest.approx(np.log10(3e22))


class _TruthOnFI:
    """Reconstructs FI-chip rows as the truth, the others flat."""

    latent_dim = 8

    def reconstruct(self, s: SpectrumSet) -> np.ndarray:
        fi = (s.meta["chip_type"] == "FI").to_numpy()[:, None]
        return np.where(fi, OracleModel().reconstruct(s), FlatModel().reconstruct(s))


def test_reconstruction_deviance_ratio_per_response_type(tmp_path: Path) -> None:
    s = make_set(200)
    s.meta["chip_type"] = np.where(np.arange(200) % 3 == 0, "BI", "FI")
    s.meta["detector"] = np.where(np.arange(200) % 2 == 0, "ACIS-S", "ACIS-I")
    s.meta.loc[5, "chip_type"] = ""  # unknown: left out of the breakdown
    ctx = _ctx(s.meta, tmp_path)
    counts_b = hardness_table(s)["net_counts_b"].to_numpy()
    out = reconstruction.run(s, {"latent": _TruthOnFI()}, ctx, counts_b)
    per = out["latent"]["per_response"]
    assert set(per) == {"chip_type", "detector"} and set(per["chip_type"]) == {"BI", "FI"}
    assert per["chip_type"]["FI"] == pytest.approx(1.0)
    assert per["chip_type"]["BI"] > 2.0
    assert 1.0 < per["detector"]["ACIS-S"] < per["chip_type"]["BI"]


def test_deviance_ratio_intervals_bracket_the_ratio_and_separate_the_models(tmp_path: Path) -> None:
    s = make_set(200)
    s.meta["chip_type"] = np.where(np.arange(200) % 3 == 0, "BI", "FI")
    ctx = _ctx(s.meta, tmp_path)
    counts_b = hardness_table(s)["net_counts_b"].to_numpy()
    out = reconstruction.run(s, {"latent": _TruthOnFI(), "pca": FlatModel()}, ctx, counts_b)
    lat = out["latent"]
    lo, hi = lat["deviance_ratio_ci95"]
    assert lo < lat["deviance_ratio"] < hi
    fi_lo, fi_hi = lat["per_response_ci95"]["chip_type"]["FI"]
    assert fi_lo == pytest.approx(1.0) and fi_hi == pytest.approx(1.0)  # the truth itself
    assert lat["per_response_ci95"]["chip_type"]["BI"][0] > 1.5  # clearly worse, and says so
    for d in lat["per_counts_decile"]:
        assert d["ratio_ci95"][0] <= d["ratio"] <= d["ratio_ci95"][1]
    assert set(lat["per_class_ci95"]) == set(lat["per_class"])
    assert out["pca"]["deviance_ratio_ci95"][0] > hi  # the flat model's interval lies above


def test_ratio_interval_covers_the_true_ratio_about_95_percent() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):  # paired per-spectrum deviances, true ratio of the means 1.2
        den = rng.exponential(1.0, 300)
        num = den * rng.gamma(12.0, 0.1, 300)  # paired, as a model's deviance is with the truth's
        lo, hi = reconstruction.ratio_ci95(num, den, rng, n_boot=400)
        hits += lo <= 1.2 <= hi
    assert 0.88 <= hits / 200 <= 0.99
    assert reconstruction.ratio_ci95(np.ones(1), np.ones(1), rng) is None
