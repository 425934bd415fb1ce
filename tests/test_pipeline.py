"""pipeline: a tiny end-to-end run of simulate -> ... -> report."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.core import SpectrumSet
from xlatent.core.vocabulary import latent_columns
from xlatent.pipeline import (
    INVARIANCE_RESPONSES,
    fresh_seed,
    invariance_pairs,
    refit_ood_threshold,
    run_demo,
)


def test_run_demo_end_to_end(tmp_path: Path) -> None:
    from xlatent.model import load_model

    lines: list[str] = []
    r = run_demo(tmp_path / "demo", n=240, seed=1, epochs=1, log=lines.append)
    assert [line[:5] for line in lines] == [f"[{i}/6]" for i in range(1, 7)]
    assert list(r.timings_s) and len(r.timings_s) == 6
    for path in (r.set_path, r.latents_path, r.report_path, r.eval_dir / "metrics.json",
                 r.explorer_path):  # fmt: skip
        assert path.is_file() and path.parent.is_relative_to(r.out_dir)

    # The set on disk is the simulated one, with the split the models were trained on.
    s = SpectrumSet.read(r.set_path)
    assert len(s) == 240 and set(s.meta["split"]) == {"train", "test"}

    # The latent catalogue: one row per spectrum, 8 latents, what the saved model encodes.
    lat = pd.read_parquet(r.latents_path)
    cols = latent_columns(lat)
    assert len(cols) == 8 and lat["spec_id"].tolist() == s.meta["spec_id"].tolist()
    model = load_model(r.model_dir)
    np.testing.assert_allclose(model.transform(s), lat[cols].to_numpy(), rtol=1e-5, atol=1e-5)
    assert np.isfinite(load_model(r.pca_dir).transform(s)).all()

    # The metrics returned are the ones written, evaluated on the demo's own test split.
    written = json.loads((r.eval_dir / "metrics.json").read_text())
    assert written["data"]["n_test"] == int((s.meta["split"] == "test").sum())
    assert written["data"]["split_source"] == "meta 'split' column"
    assert r.metrics["data"] == written["data"]
    rows = {row["features"]: row for row in written["headline"]}
    assert {"latent", "hardness", "pca", "oracle"} <= set(rows)
    for row in rows.values():
        for key in ("clustering_bacc_8class", "probe_bacc_8class"):
            assert row.get(key) is None or 0.0 <= row[key] <= 1.0
    assert "data:image/png;base64" in r.report_path.read_text()
    # Response invariance on the fresh sources (240 drawn) that the first response detects,
    # through the fixed responses, in the report.
    inv = written["response_invariance"]
    assert 100 < inv["n_sources"] < 240
    assert inv["responses"] == [x["name"] for x in INVARIANCE_RESPONSES]
    assert inv["noise_floor"]["median"] > 0
    assert 'id="invariance"' in r.report_path.read_text()
    # The explorer page of every spectrum, linked from the report beside the unusual spectra.
    assert 'href="explore.html"' in r.report_path.read_text()
    assert (
        written["unusual"]["score"] == "ood_score"
    )  # the demo catalogue carries the model's ood_score
    assert len(written["unusual"]["rows"]) == 20
    assert "<b>240</b> points shown" in html.unescape(r.explorer_path.read_text())


def test_invariance_pairs_are_the_same_sources_and_the_twin_is_a_fair_redraw() -> None:
    from xlatent.analysis.invariance import NOISE_TWIN
    from xlatent.model import poisson_deviance

    pairs = invariance_pairs(400, seed=7)
    first, *others = (pairs[x["name"]] for x in INVARIANCE_RESPONSES)
    for s in others:
        assert s.meta["source_class"].tolist() == first.meta["source_class"].tolist()
        np.testing.assert_array_equal(s.meta["truth_gamma"], first.meta["truth_gamma"])
        assert not np.allclose(s.effective_area_cm2, first.effective_area_cm2)
    twin = pairs[NOISE_TWIN]
    np.testing.assert_array_equal(twin.expected_counts, first.expected_counts)
    assert not np.array_equal(twin.counts, first.counts)
    # Drawn per PI channel and regridded like the set itself: as far from the truth as it is.
    dev = [poisson_deviance(x.counts, x.expected_counts + x.background).mean()
           for x in (first, twin)]  # fmt: skip
    assert dev[1] == pytest.approx(dev[0], rel=0.05)
    np.testing.assert_allclose(twin.counts.sum(), first.counts.sum(), rtol=0.01)
    assert fresh_seed(first) == 8


class _Calibrated:
    """Records what the demo asks of a model's OOD calibration."""

    def __init__(self, calibrated: bool) -> None:
        self.calibration_ = object() if calibrated else None
        self.calls: list[tuple[SpectrumSet, str]] = []

    def calibrate_ood(self, reference: SpectrumSet, description: str) -> None:
        self.calls.append((reference, description))


def test_the_demo_refits_the_ood_threshold_on_an_independent_sky() -> None:
    from xlatent.model.calibration import MIN_REFERENCE_SPECTRA
    from xlatent.physics.simulator import simulate

    lines: list[str] = []
    m = _Calibrated(True)
    seed = 2
    got = refit_ood_threshold(m, 300, seed, lines.append)
    ((ref, description),) = m.calls
    from xlatent.recipes import OOD_SEED_OFFSET, get_recipe

    ref_seed = seed + OOD_SEED_OFFSET
    # Never fewer than a 1% quantile needs, drawn from its own seed, not the demo's.
    assert len(ref) == MIN_REFERENCE_SPECTRA and got == description
    assert description == f"simulate({MIN_REFERENCE_SPECTRA}, seed={ref_seed})"
    assert (
        ref.meta["spec_id"].tolist() == simulate(len(ref), seed=ref_seed).meta["spec_id"].tolist()
    )
    assert len(lines) == 1 and description in lines[0]
    # The demo of seed 0 refits on the shipped model's reference sky (its recipe's, seed 0).
    assert get_recipe("default").ood_seed == 0 + OOD_SEED_OFFSET
    # A model without a calibration (too few validation spectra) is left alone.
    bare = _Calibrated(False)
    assert refit_ood_threshold(bare, 300, seed, lines.append) is None and bare.calls == []
