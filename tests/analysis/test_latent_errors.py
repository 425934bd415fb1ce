"""evaluate's ``latent_errors`` (coverage from a noise twin) and ``ood`` metrics, and the report
section that shows them, with a transparent stand-in model (band fractions as latents)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xlatent.analysis import evaluate
from xlatent.core import SpectrumSet
from xlatent.model.uncertainty import encode_with_errors
from xlatent.report import render_report

from .synth import make_set


class BandModel:
    """Latents: the net-count fractions in 4 energy bands (a smooth statistic of the counts);
    reconstruction: the noiseless truth, so the parametric redraws are the true noise."""

    latent_dim = 4

    def transform(self, s: SpectrumSet) -> np.ndarray:
        net = np.clip(s.counts - s.background, 0, None)
        bands = np.stack([b.sum(1) for b in np.array_split(net, 4, axis=1)], axis=1)
        return bands / np.maximum(bands.sum(1, keepdims=True), 1.0)

    def reconstruct(self, s: SpectrumSet) -> np.ndarray:
        return s.expected_counts.copy()

    def encode(self, s: SpectrumSet, n_draws: int = 16, seed: int = 0):  # noqa: ANN201
        return encode_with_errors(self, s, n_draws, seed=seed)


def twin_of(s: SpectrumSet) -> SpectrumSet:
    rng = np.random.default_rng(5)
    counts = rng.poisson(s.expected_counts + s.background).astype(float)
    return SpectrumSet(grid=s.grid, counts=counts, background=s.background,
                       exposure_s=s.exposure_s, effective_area_cm2=s.effective_area_cm2,
                       meta=s.meta.assign(spec_id=s.meta["spec_id"] + "-t"),
                       expected_counts=s.expected_counts)  # fmt: skip


def run(s: SpectrumSet, twin: object, out: Path) -> dict:
    """``latent_errors.run`` as evaluate calls it (the rest of evaluate is slow and tested
    elsewhere): test rows scored, training rows not."""
    import contextlib

    from xlatent.analysis import latent_errors
    from xlatent.analysis._common import Context, make_split

    meta = s.meta.reset_index(drop=True)
    ctx = Context(meta=meta, is_train=make_split(meta, 0), out_dir=out, seed=0, max_points=200)
    metrics: dict = {"format": "xlatent.metrics", "format_version": 3}
    latent_errors.run(BandModel(), s, ctx, twin, lambda name: contextlib.nullcontext(), metrics)
    metrics["skipped"] = ctx.skipped
    metrics["data"] = {"n_test": int((~ctx.is_train).sum())}
    return metrics


def test_coverage_and_ood_metrics_and_report(tmp_path: Path) -> None:
    from xlatent.analysis.evaluation import write_metrics

    s = make_set(300)
    m = run(s, twin_of, tmp_path)
    e = m["latent_errors"]
    assert 0.60 <= e["coverage_68"] <= 0.76 and e["in_target"]
    assert len(e["per_dimension"]) == 4 and len(e["per_count_quintile"]) == 5
    assert e["n_spectra"] == m["data"]["n_test"]
    o = m["ood"]
    assert o["calibrated"] is False and len(o["top"]) == 15
    assert o["top"][0]["ood_score"] >= o["top"][-1]["ood_score"]
    write_metrics(tmp_path, m)
    html = render_report(tmp_path, tmp_path / "r.html").read_text()
    assert "Latent errors" in html and o["top"][0]["spec_id"] in html


def test_no_twin_no_coverage(tmp_path: Path) -> None:
    m = run(make_set(200), lambda sub: None, tmp_path)
    assert "latent_errors" not in m and "ood" in m
    assert any(x["analysis"] == "latent_errors" for x in m["skipped"])


def test_evaluate_takes_a_noise_twin() -> None:
    import inspect

    assert "noise_twin" in inspect.signature(evaluate).parameters
