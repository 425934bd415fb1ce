"""Contrastive training (``contrastive``): the InfoNCE term and what it does to the latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlatent.model import SpectralAutoencoder
from xlatent.model.contrastive import info_nce

from .conftest import assert_option_changes_training_reproducibly


def test_info_nce_scores_matched_copies_and_ignores_the_latent_scale() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(128, 8, generator=g)
    close = z + 0.1 * torch.randn(128, 8, generator=g)
    far = z + 1.0 * torch.randn(128, 8, generator=g)
    shuffled = close[torch.randperm(128, generator=g)]
    # Nearer copies score better; copies that belong to other sources no better than chance.
    assert info_nce(z, close) < info_nce(z, far) < info_nce(z, shuffled)
    assert float(info_nce(z, shuffled)) > np.log(128)
    # Standardised per direction: no rescaling or shift of any latent changes it, so the
    # encoder cannot lower it by inflating one direction.
    scale = torch.tensor([1e3, 1.0, 0.01, 5.0, 1.0, 1.0, 2.0, 0.5])
    np.testing.assert_allclose(
        float(info_nce(z * scale + 3.0, close * scale + 3.0)), float(info_nce(z, close)), rtol=1e-4
    )


def test_info_nce_gradient_pulls_copies_together() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, 4, generator=g)
    copy = (z + 0.5 * torch.randn(64, 4, generator=g)).requires_grad_(True)
    info_nce(z, copy).backward()
    # One small step down the gradient brings the copies nearer their originals.
    stepped = copy.detach() - 0.05 * copy.grad
    before = (copy.detach() - z).norm(dim=1).median()
    assert (stepped - z).norm(dim=1).median() < before


def test_contrastive_option_is_checked_and_training_is_seeded() -> None:
    with pytest.raises(ValueError, match="contrastive"):
        SpectralAutoencoder(contrastive=-0.1)
    assert_option_changes_training_reproducibly(contrastive=0.5)
