"""Batched inference of a fitted :class:`~xlatent.model.autoencoder.SpectralAutoencoder`.

Latents, reconstructions, or both from ONE encoder pass (:func:`encode_and_reconstruct`):
what needs the two (the catalogue's ``ood_score``, the latent errors' redraws of the
reconstruction, the calibration) encodes each spectrum once. The three functions run the same
operations on the same batches, so ``encode_and_reconstruct(m, s) == (transform(m, s),
reconstruct(m, s))`` bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xlatent.core import SpectrumSet
from xlatent.model.checkpoint import check_grid
from xlatent.model.network import SpectralTransformerAE, autocast
from xlatent.model.options import Opt
from xlatent.model.preprocess import prepare
from xlatent.model.refine import refine_latents

__all__ = ["DEFAULT_BATCH", "encode_and_reconstruct", "reconstruct", "transform"]

#: Spectra per forward pass.
DEFAULT_BATCH = 512

Step = Callable[[SpectralTransformerAE, dict], tuple[np.ndarray, ...]]


def _forward_chunks(model: Any, s: SpectrumSet, fn: Step, batch_size: int) -> list[np.ndarray]:
    """``fn(net, batch)`` on every batch of ``s``; each of its outputs concatenated over the
    batches (an empty set gives empty arrays)."""
    batch_size = Opt("int", lo=1).check("batch_size", batch_size)
    grid, net = model._fitted("grid_", "net_")
    check_grid({"grid_edges_kev": grid.edges_kev}, s.grid, "model")
    dev = next(net.parameters()).device
    prep = prepare(s)
    refine = (getattr(model, "refine_steps", 0), getattr(model, "refine_min_counts", 0.0))
    outs: list[tuple[np.ndarray, ...]] = []
    net.eval()
    with torch.inference_mode():
        for k in range(0, len(s), batch_size):
            sl = slice(k, k + batch_size)
            batch = {
                "feats": torch.as_tensor(prep.features[sl], dtype=torch.float32, device=dev),
                "glob": torch.as_tensor(prep.global_features[sl], dtype=torch.float32, device=dev),
                "log_area": torch.as_tensor(prep.log_area[sl], dtype=torch.float32, device=dev),
                "pileup": torch.as_tensor(prep.pileup[sl], dtype=torch.float32, device=dev),
                "amp": prep.amplitude[sl],
                "counts": prep.counts[sl],
                "background": prep.background[sl],
                "refine": refine,
            }
            with autocast(dev):
                outs.append(fn(net, batch))
    if not outs:
        return [np.zeros((0, 0)), np.zeros((0, 0))]
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


def _latents(net: SpectralTransformerAE, b: dict) -> torch.Tensor:
    """The encoder's latents, refined on bright spectra when the model says so
    (:mod:`xlatent.model.refine`)."""
    z = net.encode(b["feats"], b["glob"]).float()
    steps, min_counts = b["refine"]
    return refine_latents(net, z, b, steps, min_counts) if steps else z


def _to_numpy(z: torch.Tensor) -> np.ndarray:
    return z.cpu().numpy().astype(np.float64)


def _recon(net: SpectralTransformerAE, z: torch.Tensor, b: dict) -> np.ndarray:
    """Expected source counts: amplitude times the decoded shape (float64)."""
    p = torch.exp(net.log_shape(z, b["log_area"], b["pileup"])).double().cpu().numpy()
    return p * b["amp"][:, None]


def transform(model: Any, s: SpectrumSet, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Latent vectors, (n, latent_dim) float64."""
    (z,) = _forward_chunks(model, s, lambda net, b: (_to_numpy(_latents(net, b)),), batch_size)
    return z.reshape(len(s), model.latent_dim)


def reconstruct(model: Any, s: SpectrumSet, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Expected *source* counts per bin (n, m): amplitude times the decoded shape."""
    (r,) = _forward_chunks(model, s, lambda net, b: (_recon(net, _latents(net, b), b),), batch_size)
    return r.reshape(len(s), s.grid.n_bins)


def encode_and_reconstruct(
    model: Any, s: SpectrumSet, batch_size: int = DEFAULT_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(latents (n, latent_dim), reconstruction (n, m)) from one encoder pass per batch."""

    def both(net: SpectralTransformerAE, b: dict) -> tuple[np.ndarray, np.ndarray]:
        z = _latents(net, b)
        return _to_numpy(z), _recon(net, z, b)

    z, r = _forward_chunks(model, s, both, batch_size)
    return z.reshape(len(s), model.latent_dim), r.reshape(len(s), s.grid.n_bins)
