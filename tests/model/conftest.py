"""Small SpectrumSets for the model tests (built with the core constructor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xlatent.core import EnergyGrid, SpectrumSet

from .toy import toy_spectrum_set

# Two cores: more threads only add contention; fixed threads also keep results reproducible.
torch.set_num_threads(min(2, torch.get_num_threads()))

#: How close a result must come to one stored by an earlier commit (tests/model/data): float32
#: kernels differ by CPU (oneDNN and OpenBLAS pick AVX2 or AVX-512), which moves latents
#: ~2e-7; any change of the computation moves them by orders of magnitude more.
STORED = {"rtol": 1e-5, "atol": 1e-6}

#: Fast options for tests: a small network and a few epochs.
FAST = {"d_model": 32, "ff_dim": 64, "n_layers": 1, "decoder_hidden": 64, "progress": False}


@pytest.fixture(scope="session")
def toy_set() -> SpectrumSet:
    return toy_spectrum_set(300, seed=3)


@pytest.fixture()
def tiny_set() -> SpectrumSet:
    """Built directly with the core constructor: 40 power-law-ish spectra, 32 bins."""
    return make_tiny_set()


#: Options of the model in ``saved_dirs`` (resuming it needs the same ones).
SAVED_OPTS = {"latent_dim": 3, "epochs": 3, "seed": 1, "patience": 100, **FAST}


@pytest.fixture(scope="session")
def saved_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trained once per session on ``make_tiny_set()``: an autoencoder directory with its
    ``train_state.pt`` (stopped after 2 of 3 epochs, so it can be resumed), a finished one,
    and a PCA directory. Tests copy them before damaging anything."""
    from xlatent.model import PCABaseline, SpectralAutoencoder

    root = tmp_path_factory.mktemp("saved")
    s = make_tiny_set()

    class Stop(Exception):
        pass

    def stop(epoch: int, record: dict) -> None:
        if epoch == 2:
            raise Stop

    try:
        SpectralAutoencoder(**SAVED_OPTS).fit(s, checkpoint_dir=root / "cut", callback=stop)
    except Stop:
        pass
    SpectralAutoencoder(**SAVED_OPTS).fit(s, checkpoint_dir=root / "ae")
    PCABaseline(n_components=4).fit(s).save(root / "pca")
    return {"cut": root / "cut", "ae": root / "ae", "pca": root / "pca"}


def make_tiny_set() -> SpectrumSet:
    """40 power-law-ish spectra on 32 bins, built directly with the core constructor."""
    rng = np.random.default_rng(0)
    grid = EnergyGrid.log(0.5, 8.0, 32)
    e = grid.centers_kev
    gamma = rng.uniform(1, 3, 40)
    shape = e[None, :] ** -gamma[:, None]
    expected = shape / shape.sum(1, keepdims=True) * rng.uniform(50, 500, 40)[:, None]
    bkg = np.full((40, 32), 0.05)
    return SpectrumSet(
        grid=grid,
        counts=rng.poisson(expected + bkg).astype(float),
        background=bkg,
        exposure_s=np.full(40, 1e4),
        effective_area_cm2=np.full((40, 32), 400.0),
        meta=pd.DataFrame({"spec_id": [f"s{i}" for i in range(40)], "gamma": gamma}),
        expected_counts=expected,
    )


def assert_option_changes_training_reproducibly(**option: object) -> None:
    """Training the tiny set with ``option`` gives other latents than without it, and the
    same ones twice (its randomness is seeded)."""
    from xlatent.model import SpectralAutoencoder

    s = make_tiny_set()
    opts = dict(latent_dim=3, epochs=2, batch_size=16, seed=1, **FAST)
    z0 = SpectralAutoencoder(**opts).fit(s).transform(s)
    z1 = SpectralAutoencoder(**option, **opts).fit(s).transform(s)
    z2 = SpectralAutoencoder(**option, **opts).fit(s).transform(s)
    assert not np.allclose(z0, z1)
    np.testing.assert_array_equal(z1, z2)
