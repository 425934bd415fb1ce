"""``xlatent train --ood-reference SET``: the OOD threshold refitted on spectra the model was
not fitted on (as the demo and the shipped model's recipe do)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.model import load_model
from xlatent.physics.simulator import simulate


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_train_refits_the_ood_threshold_on_the_reference(tmp_path: Path) -> None:
    train, ref = tmp_path / "s.h5", tmp_path / "ref.h5"
    simulate(800, seed=4).write(train)
    simulate(1000, seed=5).write(ref)
    common = ("train", train, "--epochs", "1", "--latent-dim", "2")
    assert run(*common, "--out", tmp_path / "plain").exit_code == 0
    result = run(*common, "--out", tmp_path / "refit", "--ood-reference", ref)
    assert result.exit_code == 0, result.output
    assert "flags 1% of 1000 reference spectra" in result.output
    plain = load_model(tmp_path / "plain").calibration_
    refit = load_model(tmp_path / "refit").calibration_
    assert (refit.reference, refit.n_reference) == ("ref.h5", 1000)
    assert plain.reference != "ref.h5" and plain.threshold != refit.threshold
    # Only the OOD part is refitted: the same training gives the same latent error scale.
    assert refit.error_scale == plain.error_scale


def test_pca_has_no_threshold_to_refit(tmp_path: Path) -> None:
    train = tmp_path / "s.h5"
    simulate(100, seed=4).write(train)
    result = run("train", train, "--model", "pca", "--out", tmp_path / "m",
                 "--ood-reference", train)  # fmt: skip
    assert result.exit_code == 2 and "no OOD threshold" in result.output
    assert not (tmp_path / "m").exists()


def test_a_missing_reference_is_refused_before_training(tmp_path: Path) -> None:
    train = tmp_path / "s.h5"
    simulate(100, seed=4).write(train)
    result = run("train", train, "--out", tmp_path / "m", "--ood-reference", tmp_path / "no.h5")
    assert result.exit_code == 2 and "no.h5: no such file" in result.output
    assert not (tmp_path / "m").exists()  # nothing trained, nothing written


def test_a_recipe_keeps_its_own_reference(tmp_path: Path) -> None:
    ref = tmp_path / "ref.h5"
    simulate(100, seed=4).write(ref)
    result = run("train", "--recipe", "default", "--out", tmp_path / "m", "--ood-reference", ref)
    assert result.exit_code == 2 and "--ood-reference" in result.output
    assert not (tmp_path / "m").exists()
