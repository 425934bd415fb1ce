"""evaluate(): the metrics.json contract, known answers end to end, and real-data degradation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlatent.analysis import evaluate, get_metric

from .synth import make_set, separated_latents

REQUIRED = (
    [
        "clustering.latent.bacc_8class",
        "clustering.latent.bacc_agn_vs_compact",
        "clustering.hardness.bacc_8class",
        "clustering.pca.bacc_8class",
        "clustering.oracle.bacc_8class",
        "probe.latent.bacc_8class",
        "probe.pca.bacc_8class",
        "probe.spectrum.bacc_8class",
        "regression.latent.hr_counts_hm",
        "regression.latent.log_nh",
        "regression.latent.gamma",
        "regression.latent.log_kt",
        "regression.latent.log_flux_b",
        "regression.hardness.log_nh",
        "regression.pca.gamma",
        "reconstruction.latent.deviance_ratio",
        "reconstruction.pca.deviance_ratio",
        "mutual_information.latent.var_prob_b",
        "mutual_information.latent.var_index_b",
        "mutual_information.pca.var_prob_b",
        "mutual_information.latent.var_prob_b_p_value",
        "mutual_information.latent.var_index_b_topk_p_value",
        "probe.noiseless.bacc_8class",
        "probe.noiseless.bacc_agn_vs_compact",
        "regression.noiseless.log_nh",
    ]
    + [
        f"clustering.{s}.protocols.{p}.{task}"
        for s in ("latent", "hardness", "hardness_flux", "hardness_ratios", "pca")
        for p in ("k8", "k8_majority", "tuned")
        for task in ("bacc_8class", "bacc_agn_vs_compact")
    ]
    + [
        f"differences.{p}.latent_minus_{b}.bacc_8class"
        for p in ("k8", "tuned", "probe")
        for b in ("hardness", "hardness_flux", "hardness_ratios", "pca")
    ]
    + [f"differences.{p}.latent_flux_minus_hardness_flux.bacc_8class" for p in ("k8", "probe")]
)
#: Interval keys: [lo, hi] lists.
REQUIRED_CI = [
    "clustering.latent.protocols.k8.bacc_8class_ci95",
    "clustering.latent.protocols.tuned.bacc_agn_vs_compact_ci95",
    "probe.latent.bacc_8class_ci95",
    "probe.noiseless.bacc_agn_vs_compact_ci95",
    "differences.k8.latent_minus_hardness.bacc_8class_ci95",
    "differences.probe.noiseless_minus_latent.bacc_8class_ci95",
]


def test_metrics_file_has_every_key(synth_eval: tuple) -> None:
    out, metrics = synth_eval
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    for key in REQUIRED:
        assert isinstance(get_metric(on_disk, key), float), key
    for key in REQUIRED_CI:
        lo, hi = get_metric(on_disk, key)
        assert lo <= hi, key
    assert on_disk["format_version"] == 3
    assert "response_invariance" not in on_disk  # no invariance_pairs given
    assert on_disk["uncertainty"]["n_repeats"] >= 5
    assert on_disk["skipped"] == []
    assert len(on_disk["interpretation"]["top_expressions"]) == 8


def test_known_answers_end_to_end(synth_eval: tuple) -> None:
    _, m = synth_eval
    # Latents are one blob per class: clustering recovers the classes exactly.
    assert get_metric(m, "clustering.latent.bacc_8class") == 1.0
    assert get_metric(m, "clustering.latent.bacc_agn_vs_compact") == 1.0
    # The 'model' reconstructs with the truth itself.
    assert get_metric(m, "reconstruction.latent.deviance_ratio") == pytest.approx(1.0)
    latent_row = next(r for r in m["headline"] if r["features"] == "latent")
    assert latent_row["deviance_ratio_ci95"] == pytest.approx([1.0, 1.0])  # the truth: no spread
    # Oracle features contain log N_H and Gamma.
    assert get_metric(m, "regression.oracle.log_nh") > 0.95
    # var_prob_b is independent noise in the synthetic set.
    mi = m["mutual_information"]["latent"]
    assert mi["var_prob_b"] < mi["var_prob_b_null"] + 0.1
    assert m["data"]["n_labelled"] == 480 and len(m["data"]["classes"]) == 8


def test_hardness_baselines_with_counts_with_flux_and_alone(synth_eval: tuple) -> None:
    # The latents are compared with the ratios + log counts, + log photon flux (what the
    # catalogue gives), and alone: a lead must not rest on the weakest of them; and
    # latents + flux with ratios + flux.
    _, m = synth_eval
    f = m["features"]
    dims = [f[k]["dim"] for k in ("hardness", "hardness_flux", "hardness_ratios")]
    assert dims == [4, 4, 3]
    assert f["hardness"]["columns"][-1] == "log_net_counts_b"
    assert f["hardness_flux"]["columns"][-1] == "log_photflux_b"
    assert not any("log_" in c for c in f["hardness_ratios"]["columns"])
    assert f["hardness_ratios"]["hardness_columns"] == f["hardness"]["hardness_columns"]
    # Like for like with hardness_flux: the latents + the same flux column.
    assert f["latent_flux"]["dim"] == f["latent"]["dim"] + 1
    assert f["latent_flux"]["columns"] == [*f["latent"]["columns"], "log_photflux_b"]
    rows = {r["features"]: r for r in m["headline"]}
    assert {rows[k]["role"] for k in ("hardness_flux", "hardness_ratios", "latent_flux")} == {
        "compare"
    }


def test_spectrum_reference_is_probed_not_clustered(synth_eval: tuple) -> None:
    _, m = synth_eval
    assert m["features"]["spectrum"]["role"] == "reference"
    assert "spectrum" not in m["clustering"]
    # The synthetic classes differ in slope and N_H far above the noise: the spectra hold them.
    assert get_metric(m, "probe.spectrum.bacc_8class") > 0.5  # chance: 0.125
    assert get_metric(m, "regression.spectrum.log_nh") > 0.8
    bins = get_metric(m, "probe.latent.bacc_8class_by_counts")
    assert len(bins) == 5 and sum(b["n"] for b in bins) == m["probe"]["latent"]["n"]
    row = next(r for r in m["headline"] if r["features"] == "spectrum")
    assert row["clustering_bacc_8class"] is None and row["probe_bacc_8class"] is not None


def test_every_listed_figure_exists(synth_eval: tuple) -> None:
    out, m = synth_eval
    files = {f["file"] for f in m["figures"]}
    assert {"confusion_clustering.png", "regression_r2.png", "latent_correlations.png",
            "reconstruction_examples.png", "interpretation_best_expressions.png",
            "latent_map.png"} <= files  # fmt: skip
    for f in files:
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_real_data_without_labels_or_truth_does_not_crash(tmp_path: Path) -> None:
    s = make_set(120, truth=False, labels=False)
    lat = tmp_path / "lat.parquet"
    separated_latents(s).iloc[10:].to_parquet(lat)  # some spectra have no latents
    m = evaluate(s, lat, tmp_path, seed=0, projection="pca", max_points=100)
    skipped = {x["analysis"] for x in m["skipped"]}
    assert {"clustering", "features.oracle", "reconstruction.latent"} <= skipped
    assert "oracle" not in m["features"]
    assert m["data"]["n_without_latents"] == 10
    assert "regression" in m and "hr_counts_hm" in m["regression"]["latent"]
    assert (tmp_path / "metrics.json").is_file()


def _with_catalogue(s, seed: int = 2):
    """Catalogue columns as a CSC join writes them (photon-flux hard_*, powlaw_*, var_*)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(s)
    k = np.arange(n) % 8  # make_set cycles through the classes
    m = s.meta
    for c in ("hm", "hs", "ms"):
        m[f"hard_{c}"] = np.clip(m[f"hr_counts_{c}"] + rng.normal(0, 0.05, n), -1, 1)
    m["powlaw_gamma"] = 1.0 + 0.25 * k + rng.normal(0, 0.02, n)
    m["powlaw_nh"] = 10 ** (0.5 + 0.3 * k)  # CSC unit: 1e20 cm^-2
    m["bb_kt"] = 10 ** (-0.5 + 0.1 * k)
    m["var_prob_b"] = rng.uniform(0, 1, n)
    m["var_index_b"] = rng.integers(0, 10, n)
    return s


def test_catalogue_columns_are_regression_targets_named_by_source(tmp_path: Path) -> None:
    s = _with_catalogue(make_set(240, truth=False))
    m = evaluate(s, separated_latents(s), tmp_path, seed=0, projection="pca", max_points=240,
                 n_repeats=2)  # fmt: skip
    hard = m["features"]["hardness"]
    assert hard["hardness_source"] == "catalog" and hard["columns"][:3] == [
        "hard_hm", "hard_hs", "hard_ms"]  # fmt: skip
    assert hard["description"].startswith("CSC catalogue photon-flux")
    reg = m["regression"]["latent"]
    for key in ("hr_counts_hm", "catalog_hard_hm", "catalog_powlaw_gamma", "catalog_log_nh",
                "catalog_log_bb_kt", "catalog_var_prob_b", "catalog_var_index_b"):  # fmt: skip
        assert key in reg, key
    assert get_metric(m, "regression.latent.catalog_powlaw_gamma") > 0.9  # latents = classes
    assert get_metric(m, "regression.latent.catalog_var_prob_b") < 0.2  # noise
    targets = m["regression_info"]["targets"]
    assert "1e20" in targets["catalog_log_nh"] and targets["hr_counts_hm"].startswith("count")


def test_counts_hardness_when_the_set_has_no_catalogue(tmp_path: Path) -> None:
    s = make_set(160, truth=False)
    m = evaluate(s, separated_latents(s), tmp_path, seed=0, projection="pca", max_points=160,
                 n_repeats=2)  # fmt: skip
    hard = m["features"]["hardness"]
    assert hard["hardness_source"] == "counts" and hard["columns"][0] == "hr_counts_hm"
    assert not any(k.startswith("catalog_") for k in m["regression"]["latent"])
