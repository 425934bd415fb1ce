"""The encoder's optional photon-space channel (``photon_channel``): the net shape over the
relative effective area."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xlatent.model import SpectralAutoencoder, load_model
from xlatent.model.network import PHOTON_AREA_FLOOR, with_photon_channel
from xlatent.model.preprocess import log_relative_area, prepare

from .conftest import FAST, assert_option_changes_training_reproducibly
from .toy import toy_spectrum_set

FORMAT1 = Path(__file__).parent / "data" / "format1"


def test_the_channel_divides_the_shape_by_the_area() -> None:
    s = toy_spectrum_set(20, seed=1, counts_range=(500.0, 5000.0))
    feats = torch.as_tensor(prepare(s).features, dtype=torch.float64)
    m = feats.shape[1]
    out = with_photon_channel(feats)
    assert out.shape == (*feats.shape[:2], 4)
    assert torch.equal(out[..., :3], feats)
    # A flat area: the photon shape is the counts shape.
    flat = feats.clone()
    flat[..., 2] = 0.0
    torch.testing.assert_close(with_photon_channel(flat)[..., 3], flat[..., 0])
    # Otherwise: shape / area (relative to its geometric mean, floored at 0.1), renormalised.
    net = np.clip(s.counts - s.background, 0.0, None)
    rel = np.exp(log_relative_area(s.effective_area_cm2))
    photons = net / np.maximum(rel, PHOTON_AREA_FLOOR)
    expect = np.log1p(m * photons / photons.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out[..., 3].numpy(), expect, rtol=1e-6, atol=1e-9)
    # A spectrum without net counts keeps an all-zero channel (no NaN).
    empty = feats[:1].clone()
    empty[..., 0] = 0.0
    assert torch.equal(with_photon_channel(empty)[..., 3], torch.zeros_like(empty[..., 0]))


def test_the_option_is_checked_saved_and_absent_from_older_models(tmp_path) -> None:
    with pytest.raises(ValueError, match="photon_channel"):
        SpectralAutoencoder(photon_channel="yes")
    assert_option_changes_training_reproducibly(photon_channel=False)
    s = toy_spectrum_set(60, seed=2)
    model = SpectralAutoencoder(3, epochs=1, photon_channel=True, **FAST).fit(s)
    model.save(tmp_path / "m")
    header = json.loads((tmp_path / "m" / "model.json").read_text())
    assert header["config"]["arch"]["photon_channel"] is True
    back = load_model(tmp_path / "m")
    assert back.photon_channel is True
    np.testing.assert_array_equal(back.transform(s), model.transform(s))
    # The patch embedding reads the fourth channel.
    assert model.net_.encoder.patch_embed.in_features == 4 * model.patch_size
    # A file saved before the option: no photon channel (it is the default now).
    assert SpectralAutoencoder().photon_channel is True
    old = load_model(FORMAT1 / "mlp")
    assert old.photon_channel is False
    assert old.net_.encoder.patch_embed.in_features == 3 * old.patch_size
