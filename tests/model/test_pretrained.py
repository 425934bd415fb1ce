"""The pretrained model that ships in the package (``xlatent.model.pretrained``): made by the
``default`` recipe, every file loads as data, and it encodes with no model given, also the
real Chandra spectra in ``../shared`` (the issue's done-when commands)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.model import SpectralAutoencoder, load_model
from xlatent.model.pretrained import PRETRAINED_DIR, pretrained_summary

REPO = Path(__file__).resolve().parents[2]
LIMIT_BYTES = 5 * 2**20  # "a few MB at most"


def run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_shipped_model_came_from_the_default_recipe() -> None:
    from xlatent.recipes import get_recipe

    header = json.loads((PRETRAINED_DIR / "model.json").read_text())
    assert header["recipe"] == get_recipe("default").record()
    # The options the recipe fixes are the ones the model was trained with.
    assert header["config"]["arch"]["latent_dim"] == 8
    assert header["config"]["train"]["seed"] == 0
    files = sorted(p.name for p in PRETRAINED_DIR.iterdir())
    assert {"model.json", "weights.pt"} <= set(files) and "train_state.pt" not in files
    size = sum(p.stat().st_size for p in PRETRAINED_DIR.iterdir())
    assert size < LIMIT_BYTES, f"{size} bytes shipped"
    assert "recipe 'default'" in pretrained_summary()


def test_shipped_files_load_and_encode(toy_set) -> None:
    model = SpectralAutoencoder.pretrained(device="cpu")
    assert model.recipe_["name"] == "default"
    assert type(load_model()) is SpectralAutoencoder  # no directory: the pretrained one
    from xlatent.physics.simulator import simulate

    s = simulate(64, seed=99)
    z = model.transform(s)
    assert z.shape == (64, 8) and np.isfinite(z).all()
    assert np.isfinite(model.reconstruct(s)).all()
    # Different spectra, different latents: the weights are trained, not a constant map.
    assert np.ptp(z, axis=0).min() > 0


def test_package_data_declares_every_shipped_file() -> None:
    """pyproject ships ``data/pretrained/*`` of xlatent.model: every file, whatever its name."""
    text = (REPO / "pyproject.toml").read_text()
    assert '"xlatent.model" = ["data/pretrained/*"]' in text
    assert not [p for p in PRETRAINED_DIR.iterdir() if not p.is_file()]


def _shared() -> Path:
    return Path(os.environ.get("XLATENT_SHARED", REPO.parent / "shared")).resolve()


def test_encode_real_spectra_with_no_model(tmp_path: Path, monkeypatch) -> None:
    """The issue's done-when commands, from a working directory beside ``shared/``."""
    real = _shared() / "data" / "real_spectra"
    if not real.is_dir():
        pytest.skip(f"real Chandra spectra not found at {real} (set XLATENT_SHARED)")
    work = tmp_path / "clone"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run("ingest", real, "--out", "real.h5")
    assert result.exit_code == 0, result.output
    result = run("encode", "real.h5", "--out", "l.parquet")
    assert result.exit_code == 0, result.output
    assert "using the pretrained autoencoder shipped with xlatent" in result.output
    table = pd.read_parquet(work / "l.parquet")
    cols = [f"latent_{i}" for i in range(8)]
    assert len(table) >= 4 and set(cols) <= set(table.columns)
    assert np.isfinite(table[cols].to_numpy()).all()
    result = run("reconstruct", "real.h5", "--out", "r.h5")
    assert result.exit_code == 0, result.output
    assert "using the pretrained" in result.output
