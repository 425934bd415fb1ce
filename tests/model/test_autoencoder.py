"""SpectralAutoencoder: shapes, determinism, overfitting, save/load, resume, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.core import EnergyGrid, InputError
from xlatent.model import (
    CheckpointError,
    PCABaseline,
    SpectralAutoencoder,
    TrainingError,
    load_model,
)

from .conftest import FAST
from .toy import toy_spectrum_set


def test_shapes_and_nonnegative_reconstruction(toy_set) -> None:
    model = SpectralAutoencoder(latent_dim=5, epochs=2, **FAST).fit(toy_set)
    z = model.transform(toy_set)
    rec = model.reconstruct(toy_set)
    assert z.shape == (len(toy_set), 5) and np.isfinite(z).all()
    assert rec.shape == toy_set.counts.shape
    assert (rec > 0).all()
    # Amplitude is the observed net total: the shape carries no brightness.
    net = np.maximum(toy_set.counts.sum(1) - toy_set.background.sum(1), 1)
    np.testing.assert_allclose(rec.sum(1), net, rtol=1e-4)


def test_grid_not_multiple_of_patch(tiny_set) -> None:
    # 32 bins with patch 5 -> 7 tokens, the last one padded.
    model = SpectralAutoencoder(latent_dim=3, epochs=1, patch_size=5, **FAST).fit(tiny_set)
    assert model.transform(tiny_set).shape == (len(tiny_set), 3)


def test_same_seed_same_weights_and_latents(toy_set) -> None:
    a = SpectralAutoencoder(epochs=2, seed=7, **FAST).fit(toy_set)
    b = SpectralAutoencoder(epochs=2, seed=7, **FAST).fit(toy_set)
    c = SpectralAutoencoder(epochs=2, seed=8, **FAST).fit(toy_set)
    for (k, va), vb in zip(a.net_.state_dict().items(), b.net_.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    np.testing.assert_array_equal(a.transform(toy_set), b.transform(toy_set))
    assert not np.allclose(a.transform(toy_set), c.transform(toy_set))


@pytest.mark.parametrize("loss", ["poisson", "mse"])
def test_overfits_64_spectra(loss: str) -> None:
    s = toy_spectrum_set(64, seed=11)
    # The plain autoencoder: the regularisers of the defaults (latent noise, consistency) are
    # there to keep it from overfitting.
    model = SpectralAutoencoder(
        epochs=60, batch_size=16, lr=3e-3, val_fraction=0.0, patience=100, loss=loss,
        latent_noise=0.0, consistency=0.0, **FAST,
    ).fit(s)  # fmt: skip
    losses = [h["train_loss"] for h in model.history_]
    assert losses[-1] < 0.5 * losses[0]
    # The Poisson deviance (what we score by) falls too, whatever the training loss.
    devs = [h["val_deviance_per_bin"] for h in model.history_]
    assert devs[-1] < 0.7 * devs[0]


def test_save_load_identical_latents(toy_set, tmp_path: Path) -> None:
    model = SpectralAutoencoder(epochs=1, **FAST).fit(toy_set)
    model.save(tmp_path / "m")
    again = SpectralAutoencoder.load(tmp_path / "m")
    np.testing.assert_array_equal(model.transform(toy_set), again.transform(toy_set))
    np.testing.assert_array_equal(model.reconstruct(toy_set), again.reconstruct(toy_set))
    assert isinstance(load_model(tmp_path / "m"), SpectralAutoencoder)
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    assert header["kind"] == "autoencoder" and header["format_version"] >= 1
    assert len(header["grid_edges_kev"]) == toy_set.grid.n_bins + 1
    assert header["xlatent_version"] and header["preprocessing"]


def test_resume_continues_to_same_result(toy_set, tmp_path: Path) -> None:
    opts = {"epochs": 4, "seed": 3, "patience": 100, **FAST}
    full = SpectralAutoencoder(**opts).fit(toy_set, checkpoint_dir=tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_after_two(epoch: int, record: dict) -> None:
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        SpectralAutoencoder(**opts).fit(
            toy_set, checkpoint_dir=tmp_path / "cut", callback=stop_after_two
        )
    seen: list[int] = []
    resumed = SpectralAutoencoder(**opts).fit(
        toy_set, checkpoint_dir=tmp_path / "cut", resume=True, callback=lambda e, r: seen.append(e)
    )
    assert seen == [3, 4]
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3, 4]
    np.testing.assert_allclose(resumed.transform(toy_set), full.transform(toy_set), atol=1e-6)
    # The finished directory is a loadable model.
    np.testing.assert_array_equal(
        load_model(tmp_path / "cut").transform(toy_set), resumed.transform(toy_set)
    )


def test_resume_refuses_changed_options(toy_set, tmp_path: Path) -> None:
    SpectralAutoencoder(epochs=1, **FAST).fit(toy_set, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="latent_dim"):
        SpectralAutoencoder(latent_dim=4, epochs=1, **FAST).fit(
            toy_set, checkpoint_dir=tmp_path, resume=True
        )


def test_bad_checkpoints_refused(toy_set, tiny_set, tmp_path: Path) -> None:
    model = SpectralAutoencoder(epochs=1, **FAST).fit(toy_set)
    d = model.save(tmp_path / "m")
    # Other grid.
    with pytest.raises(CheckpointError, match="trained on EnergyGrid"):
        model.transform(tiny_set)
    # Other format version.
    header = json.loads((d / "model.json").read_text())
    header["format_version"] = 999
    (d / "model.json").write_text(json.dumps(header))
    with pytest.raises(CheckpointError, match="format version 999") as err:
        load_model(d)
    assert "\n" not in str(err.value)
    # Not a model directory at all; a PCA directory loaded as an autoencoder.
    with pytest.raises(CheckpointError, match="not a saved xlatent model"):
        load_model(tmp_path / "nothing")
    PCABaseline(4).fit(toy_set).save(tmp_path / "pca")
    with pytest.raises(CheckpointError, match="'pca' model"):
        SpectralAutoencoder.load(tmp_path / "pca")
    # A corrupt weights file.
    model.save(tmp_path / "m2")
    (tmp_path / "m2" / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_model(tmp_path / "m2")


def test_nan_input_refused(toy_set) -> None:
    bad = toy_set[np.arange(50)]
    bad.counts[7, 3] = np.nan
    with pytest.raises(InputError, match="NaN/inf in 1 spectra"):
        SpectralAutoencoder(epochs=1, **FAST).fit(bad)
    model = SpectralAutoencoder(epochs=1, **FAST).fit(toy_set)
    bad.counts[7, 3] = 1.0
    bad.effective_area_cm2[2, 0] = np.inf
    with pytest.raises(InputError, match="effective_area_cm2"):
        model.transform(bad)


def test_nan_loss_stops_training(toy_set) -> None:
    # An absurd learning rate without clipping drives the weights to inf.
    model = SpectralAutoencoder(epochs=3, lr=1e30, grad_clip=1e30, **FAST)
    with pytest.raises(TrainingError, match="became"):
        model.fit(toy_set)


def test_unknown_option_and_loss_refused() -> None:
    with pytest.raises(TypeError, match="laten_dim"):
        SpectralAutoencoder(laten_dim=3)
    with pytest.raises(ValueError, match="loss"):
        SpectralAutoencoder(loss="chi2")


def test_pca_baseline_same_api(toy_set, tmp_path: Path) -> None:
    pca = PCABaseline(n_components=6).fit(toy_set)
    z = pca.transform(toy_set)
    rec = pca.reconstruct(toy_set)
    assert z.shape == (len(toy_set), 6) and rec.shape == toy_set.counts.shape
    assert (rec > 0).all() and np.isfinite(pca.deviance(toy_set)).all()
    pca.save(tmp_path / "p")
    again = load_model(tmp_path / "p")
    assert isinstance(again, PCABaseline)
    np.testing.assert_allclose(again.transform(toy_set), z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(again.reconstruct(toy_set), rec, rtol=1e-12)
    with pytest.raises(CheckpointError):
        pca.transform(toy_spectrum_set(5, grid=EnergyGrid.log(0.5, 8.0, 64)))


@pytest.mark.cuda
def test_cuda_fit_with_bf16_autocast_matches_cpu_inference(toy_set, tmp_path: Path) -> None:
    model = SpectralAutoencoder(epochs=2, device="cuda", **FAST).fit(toy_set)
    assert next(model.net_.parameters()).device.type == "cuda"
    z_gpu = model.transform(toy_set)
    assert np.isfinite(z_gpu).all() and np.isfinite(model.reconstruct(toy_set)).all()
    model.save(tmp_path / "m")
    z_cpu = SpectralAutoencoder.load(tmp_path / "m", device="cpu").transform(toy_set)
    # bf16 autocast on the GPU, float32 on the CPU: equal to bf16 precision.
    np.testing.assert_allclose(z_gpu, z_cpu, atol=0.05 * np.abs(z_cpu).max())
