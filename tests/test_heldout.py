"""Held out by construction (issue 14): sets carry a split, `train` fits only its 'train' rows
and the model directory records what it was fitted on."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import SpectrumSet
from xlatent.model import load_model
from xlatent.model.checkpoint import TRAINING_IDS_FILE, CheckpointError, read_training_ids


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("heldout") / "sim.h5"
    code, out = run(
        "simulate", "--n", "200", "--seed", "4", "--out", path, "--test-fraction", "0.3"
    )
    assert code == 0, out
    return path


@pytest.mark.parametrize("kind", ["pca", "autoencoder"])
def test_train_fits_only_train_rows_and_records_them(sim: Path, tmp_path: Path, kind: str) -> None:
    s = SpectrumSet.read(sim)
    train_ids = set(s.meta.loc[s.meta["split"] == "train", "spec_id"])
    assert 0.6 < len(train_ids) / 200 < 0.8
    code, out = run("train", sim, "--out", tmp_path / "m", "--model", kind, "--epochs", "1")
    assert code == 0, out
    assert f"fitting the {len(train_ids)} 'train' rows of 200" in out
    recorded = read_training_ids(tmp_path / "m")
    assert recorded is not None and set(recorded) == train_ids
    assert set(load_model(tmp_path / "m").training_ids_) == train_ids


def test_all_rows_fits_everything(sim: Path, tmp_path: Path) -> None:
    code, out = run("train", sim, "--out", tmp_path / "m", "--model", "pca", "--all-rows")
    assert code == 0, out
    assert len(read_training_ids(tmp_path / "m") or []) == 200


def test_a_set_without_train_rows_is_refused(sim: Path, tmp_path: Path) -> None:
    s = SpectrumSet.read(sim)
    s.meta["split"] = "test"
    path = s.write(tmp_path / "all_test.h5")
    code, out = run("train", path, "--out", tmp_path / "m", "--model", "pca")
    assert code == 1 and "marks no row 'train'" in out
    assert not (tmp_path / "m" / "model.json").exists()


def test_ingest_writes_a_split_grouped_by_source(tmp_path: Path, real_spectra_dir: Path) -> None:
    code, out = run(
        "ingest", real_spectra_dir, "--out", tmp_path / "r.h5", "--test-fraction", "0.5"
    )
    assert code == 0, out
    s = SpectrumSet.read(tmp_path / "r.h5")
    assert sorted(s.meta["split"]) == ["test", "test", "train", "train"]
    code, out = run("ingest", tmp_path / "r.h5", "--out", tmp_path / "again.h5")
    assert code == 0, out
    again = SpectrumSet.read(tmp_path / "again.h5")
    assert again.meta["split"].tolist() == s.meta["split"].tolist()  # a set keeps its split


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"a\n\nb\n", "empty or malformed"),
        (b"\xff\xfe\n", "unreadable"),
        (b"a\r\nb\r\n", "malformed"),
    ],
)
def test_damaged_training_ids_are_refused(
    sim: Path, tmp_path: Path, content: bytes, reason: str
) -> None:
    code, out = run("train", sim, "--out", tmp_path / "m", "--model", "pca")
    assert code == 0, out
    (tmp_path / "m" / TRAINING_IDS_FILE).write_bytes(content)
    with pytest.raises(CheckpointError, match=reason):
        load_model(tmp_path / "m")


def test_model_dirs_without_training_ids_still_load(sim: Path, tmp_path: Path) -> None:
    code, out = run("train", sim, "--out", tmp_path / "m", "--model", "pca")
    assert code == 0, out
    (tmp_path / "m" / TRAINING_IDS_FILE).unlink()
    assert load_model(tmp_path / "m").training_ids_ is None


def test_cli_path_scores_only_spectra_the_model_never_saw(sim: Path, tmp_path: Path) -> None:
    """simulate -> train -> encode -> evaluate on one set: the model's 'train' rows are never
    scored, and metrics.json says how many were kept out."""
    import json

    s = SpectrumSet.read(sim)
    n_train = int((s.meta["split"] == "train").sum())
    model, lat, ev = tmp_path / "m", tmp_path / "l.parquet", tmp_path / "eval"
    assert run("train", sim, "--out", model, "--model", "pca")[0] == 0
    assert run("encode", sim, "--model", model, "--out", lat)[0] == 0
    code, out = run("evaluate", sim, "--latents", lat, "--model", model, "--out", ev,
                    "--invariance-n", "80")  # fmt: skip
    assert code == 0, out
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["data"]["n_excluded_trained"] == n_train
    assert metrics["data"]["n_test"] == 200 - n_train
    assert metrics["reconstruction"]["split"] == "held-out test rows"
    # A simulated set and a model: response invariance on fresh sources, the probe fitted on
    # the set's own training rows and scored on the rows the model never saw.
    inv = metrics["response_invariance"]
    # (of the 80 fresh sources drawn, those the first response detects)
    assert 40 < inv["n_sources"] < 80 and inv["reference"]["n_test"] == 200 - n_train
    assert inv["noise_floor"]["median"] > 0 and len(inv["pairs"]) == 2


def test_a_model_fitted_on_every_spectrum_leaves_nothing_to_score(
    sim: Path, tmp_path: Path
) -> None:
    model, lat = tmp_path / "m", tmp_path / "l.parquet"
    assert run("train", sim, "--out", model, "--model", "pca", "--all-rows")[0] == 0
    assert run("encode", sim, "--model", model, "--out", lat)[0] == 0
    code, out = run("evaluate", sim, "--latents", lat, "--model", model, "--out", tmp_path / "e")
    assert code == 1 and "none is held out to score" in out
