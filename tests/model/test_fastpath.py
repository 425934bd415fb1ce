"""The encoder's inference fast path (``model.fastpath``): bit for bit what the modules give
(PyTorch's native ``TransformerEncoderLayer`` path), and taken only where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlatent.core import SpectrumSet
from xlatent.model import SpectralAutoencoder, fastpath
from xlatent.model.network import SpectrumEncoder
from xlatent.model.options import ArchConfig
from xlatent.physics.simulator import simulate


@pytest.fixture(scope="module")
def model() -> SpectralAutoencoder:
    return SpectralAutoencoder.pretrained(device="cpu")


@pytest.fixture(scope="module")
def sky() -> SpectrumSet:
    return simulate(300, seed=21)


@pytest.fixture()
def threads():
    """Restores torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _layer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    layer = fastpath._layer

    def spy(*args: object) -> torch.Tensor:
        calls.append(1)
        return layer(*args)

    monkeypatch.setattr(fastpath, "_layer", spy)
    return calls


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("batch_size", [512, 200, 7])
def test_pretrained_catalogue_values_unchanged(
    model: SpectralAutoencoder,
    sky: SpectrumSet,
    monkeypatch: pytest.MonkeyPatch,
    threads: None,
    n_threads: int,
    batch_size: int,
) -> None:
    torch.set_num_threads(n_threads)
    calls = _layer_calls(monkeypatch)
    z, rec = model.encode_and_reconstruct(sky, batch_size=batch_size)
    assert calls, "the fast path was not taken"
    assert torch.get_num_threads() == n_threads  # the worker threads' setting does not leak
    monkeypatch.setattr(fastpath, "ENABLED", False)
    z0, rec0 = model.encode_and_reconstruct(sky, batch_size=batch_size)
    np.testing.assert_array_equal(z, z0)
    np.testing.assert_array_equal(rec, rec0)


def _encoder(**arch: object) -> tuple[SpectrumEncoder, torch.Tensor]:
    cfg = ArchConfig(n_bins=30, n_channels=3, n_global=2, **arch)
    torch.manual_seed(5)
    enc = SpectrumEncoder(cfg, n_pos=7).eval()
    return enc, torch.randn(cfg.n_tokens, 7)


@pytest.mark.parametrize(
    "arch",
    [
        {"patch_size": 4, "d_model": 32, "n_heads": 2, "n_layers": 3, "ff_dim": 48},  # padded
        {"patch_size": 3, "d_model": 48, "n_heads": 6, "n_layers": 1, "ff_dim": 64},
    ],
)
def test_other_architectures_match_the_modules(arch: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    enc, pos = _encoder(**arch)
    gen = torch.Generator().manual_seed(1)
    feats, glob = torch.randn(150, 30, 3, generator=gen), torch.randn(150, 2, generator=gen)
    feats[..., 0] = feats[..., 0].abs()  # log1p(m y) >= 0, as prepare makes it
    calls = _layer_calls(monkeypatch)
    with torch.inference_mode():
        fast = enc(feats, glob, pos)
        assert len(calls) == 3 * arch["n_layers"]  # 150 spectra: micro-batches of 64, 64, 22
        monkeypatch.setattr(fastpath, "ENABLED", False)
        slow = enc(feats, glob, pos)
    assert torch.equal(fast, slow)


CPU = torch.device("cpu")


def test_taken_only_in_inference_mode_and_eval() -> None:
    enc, _ = _encoder()
    with torch.inference_mode():
        assert fastpath.supported(enc, CPU)
        assert not fastpath.supported(enc, torch.device("meta"))
    with torch.no_grad():  # training's validation: the modules, as before
        assert not fastpath.supported(enc, CPU)
    enc.train()
    with torch.inference_mode():
        assert not fastpath.supported(enc, CPU)


def test_odd_head_count_and_hooks_go_through_the_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch leaves its native path for an odd head count or a hooked layer (the numbers
    are then another path's, or the hook must run): the fast path leaves too."""
    enc, pos = _encoder(d_model=48, n_heads=3)
    calls = _layer_calls(monkeypatch)
    with torch.inference_mode():
        assert not fastpath.supported(enc, CPU)
        enc(torch.randn(5, 30, 3), torch.randn(5, 2), pos)
    assert not calls
    enc, pos = _encoder()
    seen: list[int] = []
    enc.stack.layers[1].register_forward_hook(lambda *a: seen.append(1))
    with torch.inference_mode():
        assert not fastpath.supported(enc, CPU)
        enc(torch.randn(5, 30, 3), torch.randn(5, 2), pos)
    assert seen == [1] and not calls


def test_other_layers_go_through_the_modules() -> None:
    enc, pos = _encoder()
    enc.stack.layers[0].norm_first = False  # a post-norm layer: not what _layer computes
    with torch.inference_mode():
        assert not fastpath.supported(enc, CPU)
        out = enc(torch.zeros(3, 30, 3), torch.zeros(3, 2), pos)
    assert out.shape == (3, 8) and torch.isfinite(out).all()
