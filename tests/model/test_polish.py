"""Decoder polish (``polish_epochs``) and count-aware latent noise (``latent_noise_counts``)."""

from __future__ import annotations

import numpy as np
import pytest

from xlatent.model import SpectralAutoencoder

from .conftest import FAST, make_tiny_set

OPTS = dict(latent_dim=3, epochs=2, batch_size=16, seed=1, latent_noise=0.5, consistency=0.0,
            **FAST)  # fmt: skip
#: OPTS with uniform latent noise (the defaults' is count-aware since 2026-12-04).
UNIFORM = dict(OPTS, latent_noise_counts=0.0)


@pytest.fixture(scope="module")
def tiny():
    return make_tiny_set()


@pytest.fixture(scope="module")
def plain(tiny) -> SpectralAutoencoder:
    return SpectralAutoencoder(**UNIFORM).fit(tiny)


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="polish_epochs"):
        SpectralAutoencoder(polish_epochs=-1)
    with pytest.raises(ValueError, match="latent_noise_counts"):
        SpectralAutoencoder(latent_noise_counts=-1.0)


def test_polish_trains_the_decoder_alone(tiny, plain, tmp_path) -> None:
    polished = SpectralAutoencoder(polish_epochs=3, **UNIFORM).fit(tiny)
    # The encoder is frozen after the main run: the same encoder latents, bit for bit (the
    # encode-time refinement fits each latent through the decoder, which the polish changed).
    refine = plain.refine_steps
    try:
        for m in (polished, plain):
            m.set_params(refine_steps=0)
        np.testing.assert_array_equal(polished.transform(tiny), plain.transform(tiny))
    finally:
        for m in (polished, plain):
            m.set_params(refine_steps=refine)
    main, extra = polished.history_[:2], polished.history_[2:]
    keys = ("epoch", "train_loss", "val_deviance_per_bin")
    assert [[r[k] for k in keys] for r in main] == [[r[k] for k in keys] for r in plain.history_]
    assert [r["epoch"] for r in extra] == [3, 4, 5]
    assert all(r["polish"] == 1 for r in extra)
    # The decoder changed, and only for the better on the validation rows.
    assert not np.allclose(polished.reconstruct(tiny), plain.reconstruct(tiny))
    best_main = min(r["val_deviance_per_bin"] for r in main)
    assert min(r["val_deviance_per_bin"] for r in extra) < best_main
    # Saved with the model and read back.
    polished.save(tmp_path / "m")
    loaded = SpectralAutoencoder.load(tmp_path / "m")
    assert loaded.polish_epochs == 3
    np.testing.assert_array_equal(loaded.reconstruct(tiny), polished.reconstruct(tiny))


def test_count_aware_noise_spares_only_bright_spectra(tiny, plain) -> None:
    # N0 above every spectrum's net counts: the full noise for all, as without the option.
    n = tiny.counts.sum(1) - tiny.background.sum(1)
    above = SpectralAutoencoder(latent_noise_counts=float(10 * n.max()), **OPTS).fit(tiny)
    np.testing.assert_array_equal(above.transform(tiny), plain.transform(tiny))
    # N0 below them: less noise for every spectrum, so another training.
    below = SpectralAutoencoder(latent_noise_counts=float(n.min() / 10), **OPTS).fit(tiny)
    assert not np.allclose(below.transform(tiny), plain.transform(tiny))
