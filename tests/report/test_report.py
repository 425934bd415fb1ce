"""The HTML report: every section, embedded figures only, CLI wrappers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xlatent.core import InputError
from xlatent.report import SECTIONS, render_report

from .conftest import synth

make_set, separated_latents = synth.make_set, synth.separated_latents


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from xlatent.analysis import evaluate

    s = make_set(160)
    out = tmp_path_factory.mktemp("eval")
    evaluate(s, separated_latents(s), out, projection="pca", max_points=120)
    return out


def test_report_renders_every_section(eval_dir: Path, tmp_path: Path) -> None:
    path = render_report(eval_dir, tmp_path / "r.html")
    text = path.read_text()
    for sid, title in SECTIONS:
        assert f'id="{sid}"' in text and title in text
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert text.count("data:image/png;base64,") == len(metrics["figures"]) > 0
    # Self-contained: no external scripts, stylesheets or images.
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "reference study" in text and "0.400" in text and "0.690" in text
    assert f"{metrics['headline'][0]['clustering_bacc_8class']:.3f}" in text
    assert "Probe balanced accuracy, 8 classes, by broad-band net counts" in text
    # the regression table names each quantity's source
    assert "hr_counts_hm" in text and "count hardness ratio (h-m)/(h+m)" in text


def test_report_says_what_was_skipped(tmp_path: Path) -> None:
    from xlatent.analysis import evaluate

    s = make_set(60, truth=False, labels=False)
    evaluate(s, separated_latents(s), tmp_path / "e", projection="pca", max_points=60)
    text = render_report(tmp_path / "e", tmp_path / "r.html").read_text()
    assert "source_class is empty" in text
    assert "no truth_* columns" in text


def test_report_shows_protocols_intervals_and_ceiling(eval_dir: Path, tmp_path: Path) -> None:
    text = render_report(eval_dir, tmp_path / "r.html").read_text()
    m = json.loads((eval_dir / "metrics.json").read_text())
    k8 = m["clustering"]["latent"]["protocols"]["k8"]
    lo, hi = k8["bacc_8class_ci95"]
    assert f"{k8['bacc_8class']:.3f} [{lo:.3f}, {hi:.3f}]" in text
    assert "clustering k=8: 8-class" in text and "k = 8, majority-vote map" in text
    assert "noiseless (ceiling: spectra without noise)" in text
    assert "oracle (model family revealed; not a ceiling)" in text
    assert "latent − hardness" in text and "Paired differences" in text
    # The like-for-like pairs are in the table and the text says which they are.
    d = m["differences"]["k8"]["latent_flux_minus_hardness_flux"]
    lo, hi = d["bacc_8class_ci95"]
    assert (
        f"latent_flux − hardness_flux</td><td>{d['bacc_8class']:.3f} [{lo:.3f}, {hi:.3f}]" in text
    )
    assert "Like for like: <b>latent − hardness_ratios</b> (shape alone)" in text
    assert "(p = " in text and "Ross 2014" in text


@pytest.mark.parametrize("version", [99, None, "2"])
def test_report_refuses_an_unknown_format_version(
    eval_dir: Path, tmp_path: Path, version: object
) -> None:
    m = json.loads((eval_dir / "metrics.json").read_text())
    m["format_version"] = version
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match=f"format_version {version!r} is not one"):
        render_report(tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
    m["format"] = "something.else"
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="not an xlatent metrics file"):
        render_report(tmp_path, tmp_path / "r.html")


def test_report_without_metrics_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="metrics.json"):
        render_report(tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_cli_evaluate_and_report(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xlatent.cli import app

    s = make_set(120)
    s.write(tmp_path / "s.h5")
    separated_latents(s).to_parquet(tmp_path / "lat.parquet")
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", str(tmp_path / "s.h5"), "--latents",
                            str(tmp_path / "lat.parquet"), "--out", str(tmp_path / "ev"),
                            "--projection", "pca", "--max-points", "100",
                            "--no-invariance"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "8-class k=8 1.000" in r.output
    assert "response_invariance" not in r.output  # not asked for: neither run nor skipped
    r = runner.invoke(app, ["report", str(tmp_path / "ev"), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.html").stat().st_size > 10_000
    r = runner.invoke(app, ["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "metrics.json" in r.output


def test_report_lists_unusual_spectra_and_links_the_explorer(eval_dir: Path, tmp_path: Path):
    m = json.loads((eval_dir / "metrics.json").read_text())
    top = m["unusual"]["rows"]
    assert m["unusual"]["score"] == "latent_knn_distance" and len(top) == 20
    assert top[0]["score"] >= top[-1]["score"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "explore.html").write_text("<html></html>")
    text = render_report(eval_dir, tmp_path / "sub" / "r.html",
                         explorer=tmp_path / "explore.html").read_text()  # fmt: skip
    assert '<a href="../explore.html"><b>Open the interactive latent map</b></a>' in text
    assert top[0]["spec_id"] in text and "latent density" in text
    text = render_report(eval_dir, tmp_path / "r.html").read_text()
    assert "No interactive map was made" in text and top[0]["spec_id"] in text
    # metrics from before the list: the section says so instead of failing
    del m["unusual"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps(m))
    text = render_report(tmp_path / "old", tmp_path / "r2.html").read_text()
    assert "No list of unusual spectra in this evaluation" in text


def _report_with_reconstruction(eval_dir: Path, tmp_path: Path, reconstruction: dict) -> str:
    """The report's text for ``eval_dir``'s metrics with ``reconstruction`` in their place."""
    import shutil

    d = tmp_path / "e"
    shutil.copytree(eval_dir, d)
    m = json.loads((d / "metrics.json").read_text())
    m["reconstruction"] = reconstruction
    (d / "metrics.json").write_text(json.dumps(m))
    return render_report(d, tmp_path / "r.html").read_text()


def test_report_lists_the_deviance_ratio_per_response_type(eval_dir: Path, tmp_path: Path) -> None:
    text = _report_with_reconstruction(eval_dir, tmp_path, {
        "split": "held-out test rows",
        "latent": {"n": 10, "mean_deviance_per_bin": 1.0, "deviance_ratio": 0.97,
                   "per_class": {"AGN": 0.96},
                   "per_response": {"chip_type": {"BI": 1.043, "FI": 0.951},
                                    "detector": {"ACIS-I": 0.962}}},
    })  # fmt: skip
    assert "Deviance ratio per response type" in text
    assert "chip_type BI" in text and "1.043" in text and "detector ACIS-I" in text


def test_report_shows_deviance_ratio_intervals_and_deciles(eval_dir: Path, tmp_path: Path) -> None:
    text = _report_with_reconstruction(eval_dir, tmp_path, {
        "split": "held-out test rows",
        "latent": {"n": 10, "mean_deviance_per_bin": 1.0, "deviance_ratio": 0.954,
                   "deviance_ratio_ci95": [0.952, 0.957],
                   "per_class": {"CV": 1.001}, "per_class_ci95": {"CV": [0.963, 1.048]},
                   "per_counts_decile": [{"counts_lo": 1298.5, "counts_hi": 105000.0,
                                          "ratio": 1.021, "ratio_ci95": [1.002, 1.042]}]},
        "pca": {"n": 10, "mean_deviance_per_bin": 1.1, "deviance_ratio": 1.036,
                "per_counts_decile": [{"counts_lo": 1298.5, "counts_hi": 105000.0,
                                       "ratio": 1.599}]},  # older metrics: no intervals
    })  # fmt: skip
    assert "0.954 [0.952, 0.957]" in text and "1.001 [0.963, 1.048]" in text
    assert "Deviance ratio per decile" in text and "1,298–105,000" in text
    assert "1.021 [1.002, 1.042]" in text and "1.599" in text
