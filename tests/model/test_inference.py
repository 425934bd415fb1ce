"""One encoder pass for latents and reconstruction (``model.inference``): the same numbers
as ``transform`` and ``reconstruct`` bit for bit, from half the encoder calls."""

from __future__ import annotations

import numpy as np
import pytest

from xlatent.core import SpectrumSet
from xlatent.model import SpectralAutoencoder
from xlatent.model.uncertainty import encode_with_errors
from xlatent.physics.simulator import simulate


@pytest.fixture(scope="module")
def model() -> SpectralAutoencoder:
    return SpectralAutoencoder.pretrained(device="cpu")


@pytest.fixture(scope="module")
def sky() -> SpectrumSet:
    return simulate(300, seed=21)


class TwoPass:
    """The model seen through ``transform`` and ``reconstruct`` only (as before the single
    pass existed): every reconstruction encodes again."""

    def __init__(self, model: SpectralAutoencoder) -> None:
        self.model, self.latent_dim = model, model.latent_dim
        self.calibration_ = model.calibration_

    def transform(self, s: SpectrumSet) -> np.ndarray:
        return self.model.transform(s)

    def reconstruct(self, s: SpectrumSet) -> np.ndarray:
        return self.model.reconstruct(s)


@pytest.mark.parametrize("batch_size", [512, 7])
def test_single_pass_equals_transform_and_reconstruct(
    model: SpectralAutoencoder, sky: SpectrumSet, batch_size: int
) -> None:
    z, rec = model.encode_and_reconstruct(sky, batch_size=batch_size)
    np.testing.assert_array_equal(z, model.transform(sky, batch_size=batch_size))
    np.testing.assert_array_equal(rec, model.reconstruct(sky, batch_size=batch_size))
    assert z.shape == (300, model.latent_dim) and rec.shape == (300, sky.grid.n_bins)
    assert z.dtype == rec.dtype == np.float64


def test_single_pass_encodes_once(model: SpectralAutoencoder, sky: SpectrumSet) -> None:
    calls = []
    hook = model.net_.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        model.encode_and_reconstruct(sky, batch_size=100)
        assert len(calls) == 3
        model.transform(sky, batch_size=100)
        model.reconstruct(sky, batch_size=100)
        assert len(calls) == 9
    finally:
        hook.remove()


def test_empty_set(model: SpectralAutoencoder, sky: SpectrumSet) -> None:
    z, rec = model.encode_and_reconstruct(sky[np.zeros(0, dtype=int)])
    assert z.shape == (0, model.latent_dim) and rec.shape == (0, sky.grid.n_bins)


@pytest.mark.parametrize("n_draws", [0, 4])
def test_catalogue_unchanged_by_the_single_pass(
    model: SpectralAutoencoder, sky: SpectrumSet, n_draws: int
) -> None:
    one = encode_with_errors(model, sky, n_draws, seed=3)
    two = encode_with_errors(TwoPass(model), sky, n_draws, seed=3)
    for name in ("latents", "errors", "deviance", "deviance_z", "ood_score", "ood_flag"):
        a, b = getattr(one, name), getattr(two, name)
        assert (a is None) == (b is None) == (name == "errors" and n_draws == 0), name
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)
