"""Training recipes (``xlatent.recipes``, ``xlatent train --recipe``): reproducible, recorded in
``model.json``, and refused together with the options they fix. A tiny recipe stands in for
``default`` (which simulates 20000 spectra and trains for minutes)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.model import CheckpointError, SpectralAutoencoder, load_model
from xlatent.recipes import RECIPES, REPRODUCIBLE, Recipe, get_recipe, run_recipe

#: 800 spectra (enough for a calibration), 2 epochs, a small network: seconds.
TINY = Recipe(
    name="tiny",
    description="test-only",
    n=800,
    seed=2,
    options=(("latent_dim", 4), ("epochs", 2), ("d_model", 32), ("ff_dim", 64),
             ("n_layers", 1), ("decoder_hidden", 64), *REPRODUCIBLE),
    n_ood_reference=1000,
)  # fmt: skip


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if re.match(r"(?i)error:", ln)]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny recipe run through the command line (RECIPES patched for the run)."""
    out = tmp_path_factory.mktemp("recipe") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(RECIPES, "tiny", TINY)
        result = run("train", "--recipe", "tiny", "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "recipe 'tiny'" in result.output
    return out


def test_the_default_recipe_is_the_demos_model() -> None:
    r = get_recipe("default")
    assert (r.n, r.seed) == (20000, 0)  # what `xlatent demo` simulates (run_demo defaults)
    opts = r.model_options()
    assert opts["latent_dim"] == 8 and opts["seed"] == 0
    assert opts["device"] == "cpu" and opts["num_threads"] == 1  # bit-reproducible on a CPU
    SpectralAutoencoder(**opts)  # every option is one the estimator takes
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.n = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown recipe 'nope'; known: default"):
        get_recipe("nope")


def test_recipe_recorded_in_model_json(tiny_dir: Path) -> None:
    header = json.loads((tiny_dir / "model.json").read_text())
    assert header["recipe"] == {
        "name": "tiny", "command": "xlatent train --recipe tiny --out DIR", "n": 800,
        "seed": 2, "options": dict(TINY.options), "n_ood_reference": 1000,
        "ood_reference_seed": 1002,
    }  # fmt: skip
    assert header["xlatent_version"]
    assert header["config"]["arch"]["latent_dim"] == 4 and header["config"]["train"]["epochs"] == 2
    model = load_model(tiny_dir)
    assert model.recipe_ == header["recipe"]
    # The OOD threshold was refitted on the independent sky the record names.
    cal = model.calibration_
    assert (cal.n_reference, cal.reference) == (1000, "simulate(1000, seed=1002)")
    # The 'train' split of the simulated set was fitted (the test rows stay unseen).
    assert 0 < len(model.training_ids_) < TINY.n
    # Saving a loaded model keeps the record; refitting drops it.
    assert load_model(model.save(tiny_dir.parent / "again")).recipe_ == header["recipe"]


def test_two_runs_give_identical_weights(tiny_dir: Path, tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    model = run_recipe(TINY, tmp_path / "m", progress=False, log=lambda _: None)
    assert torch.get_num_threads() == threads  # restored after the recipe's fixed count
    first = torch.load(tiny_dir / "weights.pt", weights_only=True)["model"]
    second = torch.load(tmp_path / "m" / "weights.pt", weights_only=True)["model"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    # ... and not because nothing trained: another seed gives other weights.
    other = run_recipe(dataclasses.replace(TINY, seed=3), tmp_path / "o", progress=False,
                       log=lambda _: None)  # fmt: skip
    sd = other.net_.state_dict()
    assert not all(torch.equal(sd[k], model.net_.state_dict()[k]) for k in sd)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--epochs", "40"], "--epochs"),  # refused even at the default value
        (["--seed", "1", "--latent-dim", "4"], "--latent-dim, --seed"),
        (["--model", "pca"], "--model"),
        (["--device", "cpu"], "--device"),
        (["--all-rows"], "--all-rows"),
        (["--option", "consistency=0"], "--option"),
        (["some.h5"], "SET"),
    ],
)
def test_recipe_refuses_the_options_it_fixes(tmp_path: Path, extra: list[str], named: str) -> None:
    result = run("train", "--recipe", "default", "--out", tmp_path / "m", *extra)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert f"default fixes {named};" in line, line
    assert not (tmp_path / "m").exists()


def test_train_needs_a_set_or_a_recipe(tmp_path: Path) -> None:
    result = run("train", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "give the training SET, or --recipe" in error_line(result)
    result = run("train", "--recipe", "nope", "--out", tmp_path / "m")
    assert result.exit_code == 2 and "unknown recipe 'nope'" in error_line(result)


def test_train_help_lists_the_recipes() -> None:
    result = run("train", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--recipe" in text and "default: the demo's autoencoder" in text


def test_malformed_recipe_record_refused(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    for bad in (
        {"name": "x"},
        {**TINY.record(), "n": -1},
        {**TINY.record(), "options": {"a": [1]}},
        {**TINY.record(), "n_ood_reference": -1},
        {**TINY.record(), "unknown": 1},
    ):
        d = shutil.copytree(tiny_dir, tmp_path / f"d{len(list(tmp_path.iterdir()))}")
        header = json.loads((d / "model.json").read_text())
        header["recipe"] = bad
        (d / "model.json").write_text(json.dumps(header))
        with pytest.raises(CheckpointError, match="recipe"):
            load_model(d)


def test_recipe_record_without_the_ood_reference_loads(tiny_dir: Path, tmp_path: Path) -> None:
    """Models recorded before the OOD reference sky existed (the optional fields) still load."""
    import shutil

    d = shutil.copytree(tiny_dir, tmp_path / "old")
    header = json.loads((d / "model.json").read_text())
    for key in ("n_ood_reference", "ood_reference_seed"):
        header["recipe"].pop(key)
    (d / "model.json").write_text(json.dumps(header))
    assert load_model(d).recipe_ == header["recipe"]
    # A recipe without a reference sky records none (nor a seed for one).
    assert "ood_reference_seed" not in dataclasses.replace(TINY, n_ood_reference=0).record()
