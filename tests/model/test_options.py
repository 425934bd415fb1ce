"""Estimator options are checked before any work: one-line ValueErrors naming the option."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from xlatent.core import EnergyGrid
from xlatent.model import PCABaseline, SpectralAutoencoder

from .conftest import FAST, make_tiny_set
from .toy import toy_spectrum_set

BAD_AUTOENCODER_OPTIONS = [
    ({"latent_dim": 0}, "latent_dim"),
    ({"latent_dim": -3}, "latent_dim"),
    ({"latent_dim": 2.5}, "latent_dim"),
    ({"latent_dim": "8"}, "latent_dim"),
    ({"latent_dim": True}, "latent_dim"),
    ({"epochs": 0}, "epochs"),
    ({"epochs": -1}, "epochs"),
    ({"device": "tpu"}, "device"),
    ({"device": "gpu"}, "device"),
    ({"device": 0}, "device"),
    ({"loss": "chi2"}, "loss"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": 0.0}, "lr"),
    ({"lr": -1e-3}, "lr"),
    ({"lr": math.nan}, "lr"),
    ({"lr": math.inf}, "lr"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"warmup_frac": 2.0}, "warmup_frac"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"val_fraction": -0.1}, "val_fraction"),
    ({"patience": 0}, "patience"),
    ({"grad_clip": 0.0}, "grad_clip"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"patch_size": 0}, "patch_size"),
    ({"d_model": 30}, "n_heads"),
    ({"n_heads": 0}, "n_heads"),
    ({"n_layers": 0}, "n_layers"),
    ({"dropout": 1.0}, "dropout"),
    ({"decoder": "rnn"}, "decoder"),
    ({"decoder": "transformer", "decoder_layers": 0}, "decoder_layers"),
    ({"area_aware": "yes"}, "area_aware"),
    ({"max_time_s": -1.0}, "max_time_s"),
    ({"num_threads": 0}, "num_threads"),
    ({"progress": "yes"}, "progress"),
]


@pytest.mark.parametrize(
    "options, name", BAD_AUTOENCODER_OPTIONS, ids=[str(o) for o, _ in BAD_AUTOENCODER_OPTIONS]
)
def test_bad_autoencoder_option_refused_at_init(options: dict, name: str) -> None:
    with pytest.raises(ValueError) as err:
        SpectralAutoencoder(**options)
    msg = str(err.value)
    assert name in msg and "\n" not in msg, msg


def test_good_options_accepted_and_normalised() -> None:
    # numpy scalars from a config are plain Python values afterwards (JSON-able headers).
    m = SpectralAutoencoder(
        np.int64(4), epochs=np.int32(2), lr=np.float32(0.01), seed=np.uint8(3), device="cpu",
        max_time_s=math.inf, num_threads=1, dropout=0, progress=False,
    )  # fmt: skip
    assert m.latent_dim == 4 and type(m.latent_dim) is int
    assert type(m.train_cfg.epochs) is int and type(m.train_cfg.lr) is float
    assert m.arch.dropout == 0.0 and type(m.arch.dropout) is float
    assert PCABaseline(np.int64(3)).n_components == 3


@pytest.mark.parametrize(
    "options, name",
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": -2}, "n_components"),
        ({"n_components": 2.5}, "n_components"),
        ({"n_components": "8"}, "n_components"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**40}, "seed"),
    ],
)
def test_bad_pca_option_refused_at_init(options: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PCABaseline(**options)


def test_too_few_spectra_refused() -> None:
    s = make_tiny_set()
    for n in (0, 1):
        with pytest.raises(ValueError, match=f"at least 2 spectra to train, the set has {n}"):
            SpectralAutoencoder(epochs=1, **FAST).fit(s[np.arange(n)])
    with pytest.raises(ValueError, match="8 components need at least 8 spectra.*has 5 spectra"):
        PCABaseline(8).fit(s[np.arange(5)])
    few_bins = toy_spectrum_set(20, grid=EnergyGrid.log(0.5, 8.0, 4), seed=1)
    with pytest.raises(ValueError, match="on 4 bins"):
        PCABaseline(6).fit(few_bins)


def test_val_fraction_leaving_no_training_spectra_refused(tmp_path: Path) -> None:
    s = make_tiny_set()[np.arange(10)]
    with pytest.raises(ValueError, match="leaves no training spectra out of 10"):
        SpectralAutoencoder(epochs=1, val_fraction=0.96, **FAST).fit(s, checkpoint_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_resume_without_checkpoint_dir_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint_dir"):
        SpectralAutoencoder(epochs=1, **FAST).fit(make_tiny_set(), resume=True)


def test_cuda_without_cuda_refused_before_training(tmp_path: Path) -> None:
    model = SpectralAutoencoder(epochs=1, device="cuda", **FAST)
    with pytest.raises(ValueError, match="no CUDA device"):
        model.fit(make_tiny_set(), checkpoint_dir=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_inference_arguments_checked() -> None:
    s = make_tiny_set()
    model = SpectralAutoencoder(latent_dim=3, epochs=1, **FAST).fit(s)
    with pytest.raises(ValueError, match="batch_size"):
        model.transform(s, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.reconstruct(s, batch_size=-1)
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        model.decode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="finite"):
        model.decode(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="effective_area_cm2"):
        model.decode(np.zeros((2, 3)), effective_area_cm2=np.ones(7))
    shapes = model.decode(np.zeros((2, 3)), effective_area_cm2=np.ones(32))
    assert shapes.shape == (2, 32)
    np.testing.assert_allclose(shapes.sum(1), 1.0, rtol=1e-5)


def test_cli_train_with_zero_epochs_saves_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from xlatent.cli import app

    path = make_tiny_set().write(tmp_path / "set.h5")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(out), "--epochs", "0"])
    assert result.exit_code == 2  # a usage error, refused before the set is read
    assert "--epochs" in result.output and "Traceback" not in result.output
    assert not (out / "model.json").exists() and not (out / "weights.pt").exists()
