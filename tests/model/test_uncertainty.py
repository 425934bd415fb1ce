"""Latent errors (Poisson resampling), their calibration, the OOD score and its threshold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.core.vocabulary import latent_columns, latent_err_columns
from xlatent.model import CheckpointError, SpectralAutoencoder, load_model
from xlatent.model.calibration import CALIBRATION_FILE
from xlatent.model.catalog import latent_catalog, read_latents, write_latents
from xlatent.model.uncertainty import deviance_moments, encode_with_errors

from .conftest import FAST
from .toy import toy_spectrum_set

GRID = EnergyGrid.log(0.5, 8.0, 32)


def twin(s: SpectrumSet, seed: int) -> SpectrumSet:
    """The same sources redrawn: Poisson(truth + background estimate), as pipeline.poisson_twin."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(s.expected_counts + s.background).astype(np.float64)
    meta = s.meta.assign(spec_id=s.meta["spec_id"] + "-twin")
    return SpectrumSet(grid=s.grid, counts=counts, background=s.background,
                       exposure_s=s.exposure_s, effective_area_cm2=s.effective_area_cm2,
                       meta=meta, expected_counts=s.expected_counts)  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpectralAutoencoder, Path]:
    """A small fast model on 1,000 toy spectra (100 validation spectra: calibrated)."""
    s = toy_spectrum_set(1000, seed=5, grid=GRID)
    opts = {**FAST, "latent_dim": 4, "epochs": 20, "lr": 5e-3, "patience": 100, "seed": 2}
    model = SpectralAutoencoder(**opts).fit(s)
    d = model.save(tmp_path_factory.mktemp("calibrated") / "m")
    return model, d


def test_deviance_moments_match_poisson_draws() -> None:
    rng = np.random.default_rng(0)
    mu = np.geomspace(0.01, 300, 64)[None, :]
    from xlatent.model.preprocess import poisson_deviance

    dev = poisson_deviance(rng.poisson(np.repeat(mu, 20000, axis=0)), mu)
    e, v = deviance_moments(mu)
    assert e[0] == pytest.approx(dev.mean(), rel=0.01)
    assert v[0] == pytest.approx(dev.var(), rel=0.05)


def test_deviance_moments_interpolate_the_table_as_np_interp_does() -> None:
    # The cell of the uniform log-mu grid is found by arithmetic: the same values as a
    # binary search, at the nodes, between them, at both ends and past them.
    from xlatent.model.uncertainty import _LOG_MU, _moment_table

    mean, var = _moment_table()
    rng = np.random.default_rng(1)
    lm = np.concatenate([_LOG_MU, rng.uniform(_LOG_MU[0] - 3, _LOG_MU[-1] + 3, 5000)])
    mu = np.exp(lm)[:, None]
    e, v = deviance_moments(mu)
    inside = lm >= _LOG_MU[0]
    assert np.allclose(e[inside], np.interp(lm, _LOG_MU, mean, right=1.0)[inside], rtol=1e-12)
    assert np.allclose(v[inside], np.interp(lm, _LOG_MU, var, right=2.0)[inside], rtol=1e-12)
    assert np.allclose(e[~inside], 2 * mu[~inside, 0], rtol=1e-12)


def test_deviance_moments_of_a_spectrum_are_the_sums_over_its_bins() -> None:
    # Whole spectra are summed table by table, and rows with a bin off the table (< 1e-6 or
    # > 1e4 counts expected) are redone bin by bin: both must equal the bins' own moments.
    from xlatent.model.uncertainty import _LOG_MU

    rng = np.random.default_rng(2)
    lm = rng.uniform(_LOG_MU[0] - 2, _LOG_MU[-1] + 2, (400, 16))
    lm[:200] = np.clip(lm[:200], _LOG_MU[0], _LOG_MU[-1])  # half the rows all on the table
    mu = np.exp(lm)
    e, v = deviance_moments(mu)
    e_bins, v_bins = deviance_moments(mu.reshape(-1, 1))
    np.testing.assert_allclose(e, e_bins.reshape(400, 16).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(v, v_bins.reshape(400, 16).sum(axis=1), rtol=1e-12)


def test_calibration_is_stored_and_restored(fitted: tuple) -> None:
    model, d = fitted
    cal = model.calibration_
    assert cal is not None and (d / CALIBRATION_FILE).is_file()
    assert 0.5 < cal.error_scale < 2.0
    loaded = load_model(d)
    assert loaded.calibration_.threshold == pytest.approx(cal.threshold)
    s = toy_spectrum_set(50, seed=8, grid=GRID)
    a, b = model.encode(s, 4, seed=1), loaded.encode(s, 4, seed=1)
    np.testing.assert_allclose(a.ood_score, b.ood_score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.errors, b.errors, rtol=1e-5, atol=1e-7)


def test_errors_cover_68_percent_of_twin_differences(fitted: tuple) -> None:
    """The issue-15 target: coverage of the 68% interval within 0.60-0.76 on sources
    observed twice independently (never seen in training)."""
    model, _ = fitted
    s = toy_spectrum_set(400, seed=11, grid=GRID)
    a = model.encode(s, 16, seed=1)
    b = model.encode(twin(s, 12), 16, seed=2)
    r = np.abs(a.latents - b.latents) / np.sqrt(a.errors**2 + b.errors**2)
    assert 0.60 <= (r < 1).mean() <= 0.76
    # Errors shrink with counts: the faintest fifth has larger errors than the brightest. So
    # for the encoder's latents; refined under the default wide prior, this toy model's
    # bright latents wander nearly as far as its faint ones (the shipped model's faintest
    # fifth has 3.8x the errors of its brightest on a fresh sky).
    counts = s.counts.sum(1)
    faint, bright = counts < np.quantile(counts, 0.2), counts > np.quantile(counts, 0.8)
    steps = model.refine_steps
    try:
        model.set_params(refine_steps=0)
        e = model.encode(s, 16, seed=1).errors
    finally:
        model.set_params(refine_steps=steps)
    assert np.median(e[faint]) > 2 * np.median(e[bright])


def test_plain_bootstrap_underestimates_faint_errors(fitted: tuple) -> None:
    """Why the default redraws the reconstruction: redrawing the observed counts never puts
    a photon in an empty bin, so faint spectra get too small errors."""
    model, _ = fitted
    s = toy_spectrum_set(300, seed=13, grid=GRID, counts_range=(20, 60))
    par = encode_with_errors(model, s, 16, seed=1, method="parametric")
    obs = encode_with_errors(model, s, 16, seed=1, method="observed")
    assert np.median(obs.errors) < np.median(par.errors)


def test_ood_threshold_flags_about_one_percent(fitted: tuple) -> None:
    model, _ = fitted
    s = toy_spectrum_set(2000, seed=21, grid=GRID)
    flag = model.encode(s, 0).ood_flag
    assert flag.dtype == bool and 0.0 < flag.mean() < 0.04
    # Spectra unlike anything learned: one narrow line on a flat continuum.
    odd = toy_spectrum_set(200, seed=22, grid=GRID)
    line = np.zeros(GRID.n_bins)
    line[20] = 1.0
    expected = odd.expected_counts.sum(1, keepdims=True) * (0.8 * line + 0.2 / GRID.n_bins)
    odd.counts = np.random.default_rng(3).poisson(expected + odd.background).astype(float)
    assert model.encode(odd, 0).ood_flag.mean() > 0.5


def test_catalog_columns_and_prefix(fitted: tuple, tmp_path: Path) -> None:
    model, _ = fitted
    s = toy_spectrum_set(30, seed=31, grid=GRID)
    df = model.encode_catalog(s, n_draws=4)
    assert latent_columns(df) == [f"latent_{i}" for i in range(4)]
    assert latent_err_columns(df) == [f"latent_{i}_err" for i in range(4)]
    assert df["ood_flag"].dtype == bool and np.isfinite(df["ood_score"]).all()
    assert (df[latent_err_columns(df)] > 0).all().all()
    # Re-encoding a set whose meta already holds catalogue columns keeps one copy of each.
    s2 = SpectrumSet(grid=s.grid, counts=s.counts, background=s.background,
                     exposure_s=s.exposure_s, effective_area_cm2=s.effective_area_cm2,
                     meta=df.drop(columns=latent_columns(df)))  # fmt: skip
    df2 = model.encode_catalog(s2, n_draws=0)
    assert not df2.columns.duplicated().any() and not latent_err_columns(df2)
    for suffix in ("parquet", "fits"):
        back = read_latents(write_latents(df, tmp_path / f"c.{suffix}"))
        assert latent_columns(back) == latent_columns(df)
        assert latent_err_columns(back) == latent_err_columns(df)
        assert back["ood_flag"].astype(bool).tolist() == df["ood_flag"].tolist()


def test_latent_columns_ignore_error_and_other_prefixed_columns() -> None:
    df = pd.DataFrame(columns=["latent_1", "latent_0_err", "latent_0", "latent_map", "ood_score"])
    assert latent_columns(df) == ["latent_0", "latent_1"]
    assert latent_err_columns(df) == ["latent_0_err"]


def test_catalog_checks_shapes() -> None:
    s = toy_spectrum_set(5, seed=1, grid=GRID)
    with pytest.raises(ValueError, match="errors"):
        latent_catalog(s, np.zeros((5, 2)), errors=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="ood_score"):
        latent_catalog(s, np.zeros((5, 2)), ood_score=np.zeros(4))


def test_model_dir_without_calibration_still_encodes(fitted: tuple, tmp_path: Path) -> None:
    _, d = fitted
    old = tmp_path / "old"
    shutil.copytree(d, old)
    (old / CALIBRATION_FILE).unlink()
    model = load_model(old)
    assert model.calibration_ is None
    df = model.encode_catalog(toy_spectrum_set(20, seed=41, grid=GRID), n_draws=4)
    assert "ood_flag" not in df and np.isfinite(df["ood_score"]).all()
    assert len(latent_err_columns(df)) == 4


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c.update(format="other"),
        lambda c: c["errors"].update(scale=-1),
        lambda c: c["ood"]["gmm"].update(means=[[0.0]]),
        lambda c: c["ood"]["deviance"].update(scale=[0.0] * len(c["ood"]["deviance"]["scale"])),
        lambda c: c["ood"].pop("threshold"),
    ],
)
def test_damaged_calibration_is_one_line_error(fitted: tuple, tmp_path: Path, damage) -> None:
    _, d = fitted
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    cal = json.loads((bad / CALIBRATION_FILE).read_text())
    damage(cal)
    (bad / CALIBRATION_FILE).write_text(json.dumps(cal))
    with pytest.raises(CheckpointError, match=CALIBRATION_FILE) as err:
        load_model(bad)
    assert "\n" not in str(err.value)


def test_n_draws_checked(fitted: tuple) -> None:
    model, _ = fitted
    s = toy_spectrum_set(5, seed=1, grid=GRID)
    for bad in (1, -1, 2.5):
        with pytest.raises(ValueError, match="n_draws"):
            model.encode(s, bad)


def test_cli_encode_writes_errors_and_ood(fitted: tuple, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xlatent.cli import app

    _, d = fitted
    s = toy_spectrum_set(40, seed=51, grid=GRID)
    s.write(tmp_path / "s.h5")

    def run(*args: object) -> tuple[int, str]:
        r = CliRunner().invoke(app, [str(a) for a in args])
        return r.exit_code, r.output

    code, out = run("encode", tmp_path / "s.h5", "--model", d, "--out", tmp_path / "a.parquet",
                    "--error-draws", 4)  # fmt: skip
    assert code == 0, out
    df = read_latents(tmp_path / "a.parquet")
    assert latent_err_columns(df) == [f"latent_{i}_err" for i in range(4)]
    assert {"ood_score", "ood_flag"} <= set(df.columns) and "flagged" in out
    code, out = run("encode", tmp_path / "s.h5", "--model", d, "--out", tmp_path / "b.parquet",
                    "--error-draws", 0)  # fmt: skip
    assert code == 0, out
    assert not latent_err_columns(read_latents(tmp_path / "b.parquet"))
    code, out = run("encode", tmp_path / "s.h5", "--model", d, "--out", tmp_path / "c.parquet",
                    "--error-draws", 1)  # fmt: skip
    assert code != 0 and "--error-draws" in out
    code, out = run("encode", "--help")
    assert "--error-draws" in out


def test_ood_reference_adds_the_training_rows_the_density_left_out(
    fitted: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The threshold's reference: validation spectra plus the training rows the mixture was
    not fitted on (1% of a few hundred validation spectra alone is too noisy)."""
    from xlatent.model import calibration

    model, _ = fitted
    train, val = (
        toy_spectrum_set(500, seed=31, grid=GRID),
        toy_spectrum_set(100, seed=32, grid=GRID),
    )
    assert calibration.fit_calibration(model, train, val).n_reference == 100  # all in the mixture
    monkeypatch.setattr(calibration, "MAX_DENSITY_SPECTRA", 200)
    cal = calibration.fit_calibration(model, train, val)
    assert cal.n_reference == 100 + 300
    model.calibration_, saved = cal, model.calibration_
    try:
        score = np.concatenate([model.encode(x, 0).ood_score for x in (train, val)])
    finally:
        model.calibration_ = saved
    # 1% of the 400 reference spectra, and at most the 200 mixture rows besides, lie above.
    assert 4 <= (score > cal.threshold).sum() <= 4 + 200
    cal.save(tmp_path)
    assert calibration.read_calibration(tmp_path, model.latent_dim).n_reference == 400


def test_recalibrate_ood_on_an_independent_reference(fitted: tuple, tmp_path: Path) -> None:
    """``calibrate_ood``: the threshold refitted on a reference set flags 1% of it, keeps
    the error scale and mixture, is saved with what the reference was, and leaves the model
    alone when the reference is too small or the model has no calibration."""
    from dataclasses import replace

    from xlatent.model import calibration

    model, _ = fitted
    saved = model.calibration_
    ref = toy_spectrum_set(1500, seed=61, grid=GRID)
    try:
        assert model.calibrate_ood(ref, "toy seed 61") is model
        cal = model.calibration_
        assert cal is not saved and cal.reference == "toy seed 61" and cal.n_reference == 1500
        assert cal.error_scale == saved.error_scale and cal.density is saved.density
        assert cal.threshold != saved.threshold
        assert (model.encode(ref, 0).ood_flag.sum()) == pytest.approx(15, abs=1)
        other = model.encode(toy_spectrum_set(1500, seed=62, grid=GRID), 0).ood_flag
        assert 0.002 < other.mean() < 0.03
        cal.save(tmp_path)
        back = calibration.read_calibration(tmp_path, model.latent_dim)
        assert back.reference == "toy seed 61" and back.threshold == pytest.approx(cal.threshold)
        with pytest.raises(ValueError, match=">= 1000 spectra"):
            model.calibrate_ood(ref[:999])
        with pytest.raises(ValueError, match="description must be a string"):
            model.calibrate_ood(ref, "x" * 501)  # would not load back
        assert model.calibration_ is cal
        model.calibration_ = None
        with pytest.raises(ValueError, match="no calibration"):
            model.calibrate_ood(ref)
    finally:
        model.calibration_ = saved
    # A file without the field (written before it existed) reads as an empty reference.
    raw = json.loads((replace(saved).save(tmp_path)).read_text())
    raw["ood"].pop("reference")
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(raw))
    assert calibration.read_calibration(tmp_path, model.latent_dim).reference == ""
    raw["ood"]["reference"] = ["not", "text"]
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="ood.reference"):
        calibration.read_calibration(tmp_path, model.latent_dim)
