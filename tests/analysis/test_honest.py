"""Issue 14, honest numbers: protocols, intervals, paired differences, MI null, ceilings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.analysis import CLASSES, timedomain
from xlatent.analysis import protocols as P
from xlatent.analysis._common import Context, make_split
from xlatent.analysis.evaluation import model_info
from xlatent.analysis.features import FeatureSet, build_feature_sets
from xlatent.analysis.uncertainty import Scored, summarise, summarise_difference

from .synth import make_set


def _ctx(meta: pd.DataFrame, tmp_path: Path, seed: int = 0) -> Context:
    return Context(meta=meta, is_train=make_split(meta, seed), out_dir=tmp_path, seed=seed,
                   max_points=5000)  # fmt: skip


def _meta(cls: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"spec_id": [f"r{i}" for i in range(cls.size)], "source_class": cls})


def _fs(name: str, x: np.ndarray) -> FeatureSet:
    return FeatureSet(name, x, [f"c{j}" for j in range(x.shape[1])], "", x.shape[1])


def test_k8_and_tuned_on_sub_clustered_classes(tmp_path: Path) -> None:
    # Every class is three far-apart blobs (24 in all): k = 8 cannot keep the classes apart,
    # the tuned protocol (k up to 32, chosen on the training split) separates them exactly.
    rng = np.random.default_rng(0)
    n = 1920
    k = np.arange(n) % len(CLASSES)
    blob = 3 * k + rng.integers(0, 3, n)
    centres = rng.normal(0, 30, (24, 6))
    x = centres[blob] + rng.normal(0, 0.2, (n, 6))
    # One blob per class: both protocols are perfect.
    y = 30 * np.eye(len(CLASSES))[k] + rng.normal(0, 0.2, (n, len(CLASSES)))
    ctx = _ctx(_meta(np.array(CLASSES, dtype=object)[k]), tmp_path)
    out = P.run({"latent": _fs("latent", x), "hardness": _fs("hardness", y)}, ctx, n_repeats=3)
    sub = out["clustering"]["latent"]["protocols"]
    assert sub["tuned"]["bacc_8class"] == 1.0
    assert all(c[1] >= 24 for c in sub["tuned"]["chosen_per_repeat"])
    assert sub["k8"]["bacc_8class"] < 0.8
    assert len(sub["k8"]["bacc_8class_reps"]) == 3
    effect = out["differences"]["tuned_minus_k8"]["latent"]
    assert effect["bacc_8class_ci95"][0] > 0.1
    one = out["clustering"]["hardness"]["protocols"]
    assert one["k8"]["bacc_8class"] == 1.0 and one["tuned"]["bacc_8class"] == 1.0
    # The flat (compatibility) keys are the tuned protocol's.
    assert out["clustering"]["latent"]["bacc_8class"] == sub["tuned"]["bacc_8class"]


TRUE_BACC = 0.9 * 0.7 + 0.1 * 0.3 / 7


@pytest.fixture(scope="module")
def noisy_labels(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One blob per class; 30% of the labels flipped and, independently in each feature set,
    10% of the rows put in another class's blob. Every class's true recall is then
    0.9 * 0.7 + 0.1 * 0.3 / 7 (TRUE_BACC), for 'latent' and 'pca' alike."""
    rng = np.random.default_rng(4)
    n = 2400
    k = np.arange(n) % len(CLASSES)
    flip = rng.uniform(size=n) < 0.3
    other = (k + rng.integers(1, len(CLASSES), n)) % len(CLASSES)
    observed = np.array(CLASSES, dtype=object)[np.where(flip, other, k)]

    def blobs() -> np.ndarray:
        moved = rng.uniform(size=n) < 0.1
        blob = np.where(moved, (k + rng.integers(1, len(CLASSES), n)) % len(CLASSES), k)
        return 20 * np.eye(len(CLASSES))[blob] + rng.normal(0, 0.3, (n, len(CLASSES)))

    sets = {
        "latent": _fs("latent", blobs()),
        "pca": _fs("pca", blobs()),  # as informative as latent, other noise
        "hardness": _fs("hardness", rng.normal(size=(n, 4))),  # no information
    }
    ctx = _ctx(_meta(observed), tmp_path_factory.mktemp("noisy"))
    return P.run(sets, ctx, n_repeats=5)


@pytest.mark.parametrize("protocol", ["k8", "tuned"])
def test_interval_contains_the_true_value(noisy_labels: dict, protocol: str) -> None:
    r = noisy_labels["clustering"]["latent"]["protocols"][protocol]
    lo, hi = r["bacc_8class_ci95"]
    assert lo < TRUE_BACC < hi and 0.01 < hi - lo < 0.2, (lo, hi)
    assert lo <= r["bacc_8class"] <= hi
    assert len(set(np.round(r["bacc_8class_reps"], 12))) > 1  # the repeats differ (new splits)


def test_probe_interval_has_the_binomial_width(noisy_labels: dict) -> None:
    # The probe overfits some of the flipped labels, so its true accuracy is not known here;
    # the bootstrap interval must still have the binomial width of a mean of 8 recalls.
    p = noisy_labels["probe"]["latent"]
    lo, hi = p["bacc_8class_ci95"]
    b = p["bacc_8class"]
    n_c = p["n"] / len(CLASSES)
    expect = 2 * 1.96 * np.sqrt(b * (1 - b) / n_c) / np.sqrt(len(CLASSES))
    assert lo < b < hi and abs((hi - lo) / expect - 1) < 0.3, (lo, hi, expect)
    assert "_scored" not in p


@pytest.mark.parametrize("protocol", ["k8", "tuned", "probe"])
def test_paired_differences(noisy_labels: dict, protocol: str) -> None:
    d = noisy_labels["differences"][protocol]
    lo, hi = d["latent_minus_hardness"]["bacc_8class_ci95"]
    assert lo > 0.3, (lo, hi)  # clearly better: the interval is far from 0
    lo, hi = d["latent_minus_pca"]["bacc_8class_ci95"]
    assert lo < 0 < hi, (lo, hi)  # equally informative: the interval straddles 0


def test_difference_of_identical_predictions_is_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    y = np.array(CLASSES, dtype=object)[rng.integers(0, 8, 300)]
    s = Scored(y, (rng.uniform(size=300) < 0.6).astype(float), np.arange(300))
    d = summarise_difference([s, s], [s, s])
    assert d["mean"] == 0.0 and d["ci95"] == [0.0, 0.0]
    one = summarise([s])
    assert one["ci95"][0] < one["mean"] < one["ci95"][1]
    # Pairing needs the same rows: other rows are not compared.
    t = Scored(y, s.correct, np.arange(300) + 1)
    assert summarise_difference([s], [t])["mean"] is None


def test_mi_estimators_equal_sklearns() -> None:
    from sklearn.feature_selection._mutual_info import _compute_mi_cc, _compute_mi_cd

    rng = np.random.default_rng(0)
    x = rng.normal(size=1500)
    y = x + rng.normal(size=1500)
    yi = np.clip(np.round(2 * x + 5 + rng.normal(size=1500)), 0, 10).astype(int)
    assert timedomain.mi_cc(x, y) == pytest.approx(_compute_mi_cc(x, y, 3), abs=1e-9)
    assert timedomain.mi_cd(x, yi) == pytest.approx(_compute_mi_cd(x, yi, 3), abs=1e-9)


def test_mi_permutation_p_values_and_target_types(tmp_path: Path) -> None:
    n = 800
    rng = np.random.default_rng(0)
    a = rng.normal(size=n)
    index = np.clip(np.round(2 * a + 5 + rng.normal(size=n)), 0, 10).astype(np.int64)
    meta = pd.DataFrame({"spec_id": [f"v{i}" for i in range(n)],
                         "var_prob_b": rng.uniform(0, 1, n),  # independent of everything
                         "var_index_b": index})  # fmt: skip
    sets = {
        "latent": _fs("latent", np.column_stack([a, rng.normal(size=(n, 3))])),
        "hardness": _fs("hardness", rng.normal(size=(n, 4))),
    }
    out = timedomain.run(sets, _ctx(meta, tmp_path))
    assert out["target_type"] == {"var_prob_b": "continuous (KSG)",
                                  "var_index_b": "discrete (Ross 2014)"}  # fmt: skip
    assert out["n_permutations"] >= 100 and out["k_equal"] == 4
    lat, hard = out["latent"], out["hardness"]
    assert lat["var_index_b_p_value"] < 0.02 and lat["var_index_b_topk_p_value"] < 0.02
    assert lat["var_index_b_per_column_p_value"]["c0"] < 0.02
    # Independent columns: p-values are uniform under the null; none tiny, their mean ~0.5.
    null_p = [p for s, v in ((hard, "var_index_b"), (hard, "var_prob_b"), (lat, "var_prob_b"))
              for p in s[f"{v}_per_column_p_value"].values()]  # fmt: skip
    null_p += [lat["var_index_b_per_column_p_value"][c] for c in ("c1", "c2", "c3")]
    assert len(null_p) == 15 and min(null_p) > 0.01 and 0.3 < np.mean(null_p) < 0.7, null_p
    assert min(hard["var_index_b_p_value"], lat["var_prob_b_p_value"]) > 0.01
    assert lat["var_index_b_topk_excess"] > 0.05 > abs(hard["var_index_b_topk_excess"])
    # The discrete path is the estimator used for the integer target.
    from sklearn.feature_selection._mutual_info import _compute_mi_cd

    col = sets["latent"].X[:, 0]
    assert lat["var_index_b_per_column"]["c0"] == pytest.approx(
        _compute_mi_cd(col, index, 3), abs=0.02
    )
    assert timedomain.is_discrete(index.astype(float)) and not timedomain.is_discrete(a)


def test_noiseless_set_present_with_truth_and_skipped_without() -> None:
    s = make_set(80)
    z = np.random.default_rng(0).normal(size=(80, 8))
    skipped: list = []
    sets, _ = build_feature_sets(s, z, np.arange(80) < 60, skip=lambda *a: skipped.append(a))
    assert sets["noiseless"].role == "reference"
    assert sets["noiseless"].columns == sets["spectrum"].columns
    assert "not a ceiling" in sets["oracle"].description
    s2 = make_set(80, truth=False)
    skipped = []
    sets, _ = build_feature_sets(s2, z, np.arange(80) < 60, skip=lambda *a: skipped.append(a))
    assert "noiseless" not in sets
    assert ("features.noiseless", "no expected_counts (real data): no noiseless ceiling") in skipped


def test_model_info_prefers_get_params() -> None:
    class Estimator:
        latent_dim = 8

        def get_params(self, deep: bool = True) -> dict:
            return {"latent_dim": 8, "epochs": 30, "lr": 1e-3, "callback": print}

    info = model_info(Estimator())
    assert info["params"] == {"latent_dim": 8, "epochs": 30, "lr": 1e-3}
    assert info["kind"] == "Estimator"
