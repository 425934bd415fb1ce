"""The Poisson deviance: numpy definition, and the torch training loss against it."""

from __future__ import annotations

import numpy as np
import torch

from xlatent.model import poisson_deviance
from xlatent.model.network import torch_poisson_deviance


def test_poisson_deviance_matches_direct_sum() -> None:
    c = np.array([[0.0, 1.0, 5.0, 2.0], [3.0, 0.0, 0.0, 7.0]])
    mu = np.array([[0.5, 1.5, 4.0, 2.0], [2.0, 0.1, 1.0, 9.0]])
    direct = []
    for ci, mi in zip(c, mu, strict=True):
        total = 0.0
        for cj, mj in zip(ci, mi, strict=True):
            total += mj - cj + (cj * np.log(cj / mj) if cj > 0 else 0.0)
        direct.append(2 * total)
    np.testing.assert_allclose(poisson_deviance(c, mu), direct, rtol=1e-12)


def test_poisson_deviance_zero_when_model_equals_counts() -> None:
    c = np.array([[0.0, 3.0, 10.0]])
    assert poisson_deviance(c, c + 1e-300)[0] == 0.0 or abs(poisson_deviance(c, c)[0]) < 1e-12
    assert poisson_deviance(c, c + 1.0)[0] > 0


def test_torch_loss_equals_numpy_deviance() -> None:
    rng = np.random.default_rng(1)
    n, m = 5, 16
    logits = rng.normal(size=(n, m))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    amp = rng.uniform(5, 300, n)
    bkg = rng.uniform(0, 0.5, (n, m))
    bkg[:, :3] = 0.0  # zero background must work (log B = -inf)
    counts = rng.poisson(p * amp[:, None] + bkg).astype(float)
    expect = poisson_deviance(counts, p * amp[:, None] + bkg)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float64)

    with np.errstate(divide="ignore"):
        log_bkg = np.log(bkg)
    clogc = np.where(counts > 0, counts * np.log(np.maximum(counts, 1)), 0.0)
    got = torch_poisson_deviance(
        torch.log_softmax(t(logits), -1), t(np.log(amp)), t(counts), t(log_bkg), t(clogc)
    )
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-9)
