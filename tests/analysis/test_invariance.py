"""Response invariance (issue 12): the same sources through several responses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xlatent.analysis._common import make_split
from xlatent.analysis.invariance import NOISE_TWIN, response_invariance, within_class_sd
from xlatent.core import SpectrumSet

from .synth import make_set, separated_latents


class ShapeModel:
    """A 'model' whose latents are the log shape of the net spectrum on 8 coarse bins and
    whose reconstruction is the noiseless truth (deviance ratio 1)."""

    latent_dim = 8

    def transform(self, s: SpectrumSet) -> np.ndarray:
        net = np.clip(s.counts - s.background, 0.0, None)
        coarse = net.reshape(len(s), 8, -1).sum(axis=2)
        return np.log((coarse + 1.0) / (coarse.sum(axis=1, keepdims=True) + 8.0))

    def reconstruct(self, s: SpectrumSet) -> np.ndarray:
        if s.expected_counts is None:
            return np.clip(s.counts - s.background, 0.0, None)
        return s.expected_counts.copy()


def refold(s: SpectrumSet, area_ratio: np.ndarray | None, seed: int) -> SpectrumSet:
    """The sources of ``s`` through an effective area changed by ``area_ratio`` (per bin; the
    same broad-band counts, as the simulator normalises them), a fresh Poisson draw."""
    rng = np.random.default_rng(seed)
    exp = s.expected_counts
    if area_ratio is not None:
        exp = exp * area_ratio[None, :]
        exp *= s.expected_counts.sum(1, keepdims=True) / exp.sum(1, keepdims=True)
    meta = s.meta.copy()
    meta["spec_id"] = meta["spec_id"] + f"-{seed}"
    out = SpectrumSet(grid=s.grid, counts=rng.poisson(exp + s.background).astype(float),
                      background=s.background, exposure_s=s.exposure_s,
                      effective_area_cm2=s.effective_area_cm2 * (area_ratio if area_ratio
                                                                 is not None else 1.0),
                      meta=meta, expected_counts=exp)  # fmt: skip
    return out.update_band_columns()


@pytest.fixture(scope="module")
def sets() -> dict[str, SpectrumSet]:
    ref = make_set(320, seed=0)
    fresh = make_set(160, seed=1)
    e = fresh.grid.centers_kev
    soft_cut = np.exp(-0.8 * (e / 0.7) ** -2.5)  # a contaminant-like loss of soft area
    return {"reference": ref, "a": fresh, "b": refold(fresh, soft_cut, 5),
            NOISE_TWIN: refold(fresh, None, 6)}  # fmt: skip


def test_identical_sets_give_zero_distance_and_no_probe_change(sets: dict) -> None:
    s = sets["a"]
    inv = response_invariance(ShapeModel(), {"a": s, "a again": s}, sets["reference"])
    pair = inv["pairs"]["a vs a again"]
    assert pair["median"] == 0.0 and set(pair["per_class"].values()) == {0.0}
    again = inv["per_response"]["a again"]
    assert again["probe_change_vs_first"] == 0.0
    assert again["probe_bacc_8class"] == inv["per_response"]["a"]["probe_bacc_8class"]
    assert again["deviance_ratio"] == pytest.approx(1.0)
    assert "noise_floor" not in inv and inv["has_noise_twin"] is False
    json.dumps(inv, allow_nan=False)  # JSON-friendly as it stands


def test_a_response_change_moves_latents_more_than_photon_noise(sets: dict) -> None:
    pairs = {k: sets[k] for k in ("a", "b", NOISE_TWIN)}
    inv = response_invariance(ShapeModel(), pairs, sets["reference"], seed=3)
    floor, moved = inv["noise_floor"]["median"], inv["pairs"]["a vs b"]["median"]
    assert 0.0 < floor < moved
    # Without photon noise only the instrument is left: the twin's noiseless spectra are the
    # first's (not compared), b's differ.
    assert 0.0 < inv["pairs"]["a vs b"]["noiseless"]["median"]
    assert "noiseless" not in inv["noise_floor"]
    assert len(inv["pairs"]["a vs b"]["per_counts_tercile"]) == 3
    assert sum(t["n"] for t in inv["noise_floor"]["per_counts_tercile"]) == len(sets["a"])
    rows = {r["response"]: r for r in inv["table"]}
    assert rows["b"]["distance_to_first"] == moved and rows["b"]["noise_floor"] == floor
    assert rows[NOISE_TWIN]["distance_to_first"] == floor
    # The soft-area loss is what the latents see: the probe fitted on the reference drops.
    assert rows["b"]["probe_bacc_8class"] < rows["a"]["probe_bacc_8class"]
    ref = inv["reference"]["probe_bacc_8class"]
    assert rows["a"]["probe_change"] == pytest.approx(rows["a"]["probe_bacc_8class"] - ref)


def test_distance_is_in_units_of_the_within_class_spread() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["AGN", "CV"], dtype=object), 500)
    z = rng.normal(0.0, 2.0, (1000, 4)) + np.where(labels == "AGN", 0.0, 50.0)[:, None]
    np.testing.assert_allclose(within_class_sd(z, labels), 2.0, rtol=0.1)


def test_other_sources_are_refused(sets: dict) -> None:
    other = make_set(160, seed=1)
    other.meta["source_class"] = np.roll(other.meta["source_class"].to_numpy(), 1)
    with pytest.raises(ValueError, match="differ in source_class"):
        response_invariance(ShapeModel(), {"a": sets["a"], "x": other}, sets["reference"])
    with pytest.raises(ValueError, match="not the same sources"):
        response_invariance(ShapeModel(), {"a": sets["a"], "x": sets["a"][:10]},
                            sets["reference"])  # fmt: skip


def test_evaluate_writes_it_and_the_report_shows_it(sets: dict, tmp_path: Path) -> None:
    from xlatent.analysis import evaluate
    from xlatent.report import render_report

    ref = make_set(160, truth=False)  # no truth: a faster evaluation, same invariance
    pairs = {k: sets[k] for k in ("a", "b", NOISE_TWIN)}
    m = evaluate(ref, separated_latents(ref), tmp_path, model=ShapeModel(), projection="pca",
                 max_points=120, n_repeats=1, invariance_pairs=pairs)  # fmt: skip
    assert m["format_version"] == 3
    inv = m["response_invariance"]
    assert inv["responses"] == ["a", "b"] and inv["noise_floor"]["median"] > 0
    assert inv["reference"]["n_test"] == int((~make_split(ref.meta, 0)).sum())

    text = render_report(tmp_path, tmp_path / "r.html").read_text()
    assert 'id="invariance"' in text and "noise floor" in text
    assert f"{inv['pairs']['a vs b']['median']:.3f}" in text
    # A format-2 file (before this section existed) renders without it.
    m.pop("response_invariance")
    m["format_version"] = 2
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    text = render_report(tmp_path, tmp_path / "r2.html").read_text()
    assert 'id="invariance"' not in text and 'id="reconstruction"' in text


def test_evaluate_skips_it_without_a_model_that_encodes(sets: dict, tmp_path: Path) -> None:
    from xlatent.analysis._common import Context
    from xlatent.analysis.evaluation import _invariance

    ref = sets["reference"]
    ctx = Context(meta=ref.meta, is_train=make_split(ref.meta, 0), out_dir=tmp_path)
    z = ShapeModel().transform(ref)
    assert _invariance({"a": sets["a"]}, ref, z, None, ctx) is None
    assert _invariance(lambda s: None, ref, z, ShapeModel(), ctx) is None
    assert [s["analysis"] for s in ctx.skipped] == ["response_invariance"] * 2
    inv = _invariance(lambda s: {"a": sets["a"]}, ref, z, ShapeModel(), ctx)
    assert inv["responses"] == ["a"] and inv["pairs"] == {}
