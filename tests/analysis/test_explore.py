"""analysis.explore: the interactive page's content, read back without a browser
(the browser itself: test_explore_browser.py)."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.analysis.explore import explore, pick_rows, resolve_projection
from xlatent.analysis.shapes import coarse_shapes, decode_log, encode_log, log_range
from xlatent.model.catalog import latent_catalog

from .page_doc import column, page_models
from .synth import OracleModel, make_set, separated_latents


@pytest.fixture(scope="module")
def sim() -> tuple:
    s = make_set(300)
    z = separated_latents(s).filter(like="latent_").to_numpy()
    return s, latent_catalog(s, z)


def test_page_holds_every_point_its_spectrum_and_the_colourings(sim, tmp_path: Path) -> None:
    s, cat = sim
    r = explore(cat, tmp_path / "e.html", s, projection="pca")
    assert (r.n_total, r.n_shown, r.projection) == (300, 300, "pca")
    assert r.spectra == "observed + noiseless truth (simulator)"
    text = r.path.read_text()
    # Self-contained: no tag loads anything (BokehJS's own code names a MathJax URL that it
    # fetches only for LaTeX labels, which the page has none of; the browser test checks).
    assert not re.search(r'<(script|link|img)[^>]*(src|href)="(https?:)?//', text)
    m = page_models(r.path)
    pts = m["points"]["data"]
    assert column(pts, "x").shape == (300,) and column(pts, "spec_id") == cat.spec_id.tolist()
    assert column(pts, "cls")[:8] == list(cat.source_class[:8])
    labels = m["colour"]["options"]
    assert labels == ["class", "hardness HS", "hardness HM", "hardness MS", "log N_H (true)",
                      "variability probability", "unusualness (latent density)",
                      "log net counts"]  # fmt: skip
    # The per-point spectra: 32 one-byte bins each, decoding to the coarse shapes.
    obs = column(m["spectra"]["data"], "obs").reshape(300, 32)
    edges, shape, truth = coarse_shapes(s, np.arange(300), s.expected_counts)
    lo, hi = log_range(shape, truth)
    np.testing.assert_array_equal(obs, encode_log(shape, lo, hi))
    rec = column(m["spectra"]["data"], "rec").reshape(300, 32)
    np.testing.assert_array_equal(rec, encode_log(truth, lo, hi))
    header = html.unescape(text)
    assert "<b>300</b> points shown (all spectra)" in header and "<b>PCA</b>" in header


def test_large_catalogues_are_subsampled_keeping_the_outliers(sim, tmp_path: Path) -> None:
    s, cat = sim
    cat = cat.assign(ood_score=np.random.default_rng(3).uniform(size=len(cat)))
    r = explore(cat, tmp_path / "e.html", None, max_points=100, projection="pca")
    shown = set(column(page_models(r.path)["points"]["data"], "spec_id"))
    assert r.n_shown == len(shown) == 100 and r.spectra == "none"
    top5 = cat.nlargest(5, "ood_score").spec_id
    assert set(top5) <= shown
    text = html.unescape(r.path.read_text())
    assert "100 of 300 spectra: the 5 most unusual (by ood_score) and 95 drawn at random" in text
    assert "no SpectrumSet given" in text
    # same seed, same page; another seed, another draw
    again = explore(cat, tmp_path / "f.html", None, max_points=100, projection="pca")
    assert set(column(page_models(again.path)["points"]["data"], "spec_id")) == shown
    other = explore(cat, tmp_path / "g.html", None, max_points=100, projection="pca", seed=1)
    assert set(column(page_models(other.path)["points"]["data"], "spec_id")) != shown


def test_model_reconstruction_and_spectra_missing_from_the_set(sim, tmp_path: Path) -> None:
    s, cat = sim
    r = explore(cat, tmp_path / "e.html", s[:200], OracleModel(), projection="pca")
    assert r.spectra == "observed + model reconstruction"
    assert r.notes == ["100 shown points have no spectrum in the set"]
    obs = column(page_models(r.path)["spectra"]["data"], "obs").reshape(300, 32)
    assert (obs[:200].max(axis=1) > 0).all() and (obs[200:] == 0).all()


def test_a_catalogue_with_latents_only(tmp_path: Path) -> None:
    z = np.random.default_rng(0).normal(size=(50, 4))
    cat = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(4)])
    cat.insert(0, "spec_id", [f"q{i}" for i in range(50)])
    cat.loc[7, "latent_2"] = np.inf
    r = explore(cat, tmp_path / "e.html", projection="pca")
    assert r.n_shown == 49 and r.notes == ["1 rows with non-finite latents left out"]
    m = page_models(r.path)
    assert m["colour"]["options"] == ["unusualness (latent density)"]
    with pytest.raises(ValueError, match="max_points must be at least 10"):
        explore(cat, tmp_path / "x.html", max_points=5)
    # one or two spectra: nothing to project, the first two latents are the map
    one = explore(cat.iloc[:1], tmp_path / "one.html", model=OracleModel())
    assert one.projection == "latents" and one.n_shown == 1
    assert one.notes == ["a model was given without its SpectrumSet: no spectra to reconstruct"]


def test_pick_rows_and_projection_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    score = np.arange(1000.0)
    score[3] = np.nan
    rows, n_out = pick_rows(score, 200, seed=0)
    assert rows.size == 200 and n_out == 10 and np.all(np.diff(rows) > 0)
    assert set(range(990, 1000)) <= set(rows)
    assert pick_rows(score, 1000, 0)[0].tolist() == list(range(1000))
    monkeypatch.setitem(sys.modules, "umap", None)  # as if umap-learn were not installed
    assert resolve_projection("auto", 2000)[0] == "tsne"
    method, why = resolve_projection("auto", 2001)
    assert method == "pca" and "t-SNE is too slow" in why
    assert resolve_projection("umap", 10) == ("umap", "as requested")


def test_shapes_have_unit_integral_and_codes_round_trip() -> None:
    s = make_set(40)
    edges, obs, truth = coarse_shapes(s, None, s.expected_counts)
    assert obs.shape == (40, 32) and edges.size == 33
    np.testing.assert_allclose(np.nansum(obs * np.diff(edges), axis=1), 1.0)
    # the truth, through the same steps, sits on the observed spectrum within photon noise
    pos = (obs > 0) & (truth > 0)
    assert np.median(np.abs(np.log10(truth[pos] / obs[pos]))) < 0.2
    v = 10 ** np.linspace(-3, 1, 50)
    np.testing.assert_allclose(np.log10(decode_log(encode_log(v, -3, 1), -3, 1)),
                               np.log10(v), atol=4 / 254 / 2 + 1e-12)  # fmt: skip
    assert encode_log(np.array([0.0, -1.0, np.nan]), -3, 1).tolist() == [0, 0, 0]


def test_cli_similar_and_explore(sim, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xlatent.cli import app
    from xlatent.model.catalog import write_latents

    s, cat = sim
    s.write(tmp_path / "s.h5")
    write_latents(cat, tmp_path / "l.parquet")
    run = CliRunner().invoke
    r = run(app, ["similar", str(tmp_path / "l.parquet"), "x00007", "--k", "4", "--set",
                  str(tmp_path / "s.h5"), "--figure", str(tmp_path / "f.png"), "--csv",
                  str(tmp_path / "t.csv")])  # fmt: skip
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "t.csv")
    assert table["spec_id"].tolist()[0] == "x00007" and len(table) == 5
    # separated_latents: one blob per class, so the neighbours share the query's class
    assert set(table["source_class"]) == {cat.source_class[7]}
    assert "x00007" in r.output and "uncertainties not used" in r.output
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    r = run(app, ["similar", str(tmp_path / "l.parquet"), "nobody"])
    assert r.exit_code == 1 and "no spectrum with spec_id or name 'nobody'" in r.stderr
    r = run(app, ["explore", str(tmp_path / "l.parquet"), "--set", str(tmp_path / "s.h5"),
                  "--out", str(tmp_path / "e.html"), "--projection", "pca"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "300 of 300 spectra, PCA map, spectra: observed + noiseless truth" in r.output
    assert page_models(tmp_path / "e.html")["points"]
