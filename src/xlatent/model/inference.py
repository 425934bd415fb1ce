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

Step = Callable[[SpectralTransformerAE, torch.Tensor, dict], tuple[np.ndarray, ...]]


def _forward_chunks(model: Any, s: SpectrumSet, fn: Step, batch_size: int) -> list[np.ndarray]:
    """``fn(net, z, batch)`` on every batch of ``s`` and its latents ``z``; each of its
    outputs concatenated over the batches (an empty set gives empty arrays).

    The encoder runs batch by batch, then the refinement over the whole set at once (its
    chunks then fill with bright spectra of one kind, piled or not, whatever the batches:
    :func:`xlatent.model.refine.refine_latents`), then ``fn`` batch by batch again."""
    batch_size = Opt("int", lo=1).check("batch_size", batch_size)
    grid, net = model._fitted("grid_", "net_")
    check_grid({"grid_edges_kev": grid.edges_kev}, s.grid, "model")
    dev = next(net.parameters()).device
    prep = prepare(s)
    steps, min_counts = getattr(model, "refine_steps", 0), getattr(model, "refine_min_counts", 0.0)
    starts = range(0, len(s), batch_size)

    def tensor(a: np.ndarray, sl: slice) -> torch.Tensor:
        return torch.as_tensor(a[sl], dtype=torch.float32, device=dev)

    net.eval()
    with torch.inference_mode():
        zs = []
        for k in starts:
            sl = slice(k, k + batch_size)
            with autocast(dev):
                zs.append(net.encode(tensor(prep.features, sl), tensor(prep.global_features, sl)))
        if not zs:
            return [np.zeros((0, 0)), np.zeros((0, 0))]
        z = torch.cat([part.float() for part in zs])
        if steps:
            z = refine_latents(net, z, prep, steps, min_counts, model.refine_prior_sigma)
        outs: list[tuple[np.ndarray, ...]] = []
        for k in starts:
            sl = slice(k, k + batch_size)
            batch = {
                "log_area": tensor(prep.log_area, sl),
                "pileup": tensor(prep.pileup, sl),
                "amp": prep.amplitude[sl],
            }
            with autocast(dev):
                outs.append(fn(net, z[sl], batch))
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


def _to_numpy(z: torch.Tensor) -> np.ndarray:
    return z.cpu().numpy().astype(np.float64)


def _recon(net: SpectralTransformerAE, z: torch.Tensor, b: dict) -> np.ndarray:
    """Expected source counts: amplitude times the decoded shape (float64)."""
    p = torch.exp(net.log_shape(z, b["log_area"], b["pileup"])).double().cpu().numpy()
    return p * b["amp"][:, None]


def transform(model: Any, s: SpectrumSet, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Latent vectors, (n, latent_dim) float64."""
    (z,) = _forward_chunks(model, s, lambda net, z, b: (_to_numpy(z),), batch_size)
    return z.reshape(len(s), model.latent_dim)


def reconstruct(model: Any, s: SpectrumSet, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Expected *source* counts per bin (n, m): amplitude times the decoded shape."""
    (r,) = _forward_chunks(model, s, lambda net, z, b: (_recon(net, z, b),), batch_size)
    return r.reshape(len(s), s.grid.n_bins)


def encode_and_reconstruct(
    model: Any, s: SpectrumSet, batch_size: int = DEFAULT_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """(latents (n, latent_dim), reconstruction (n, m)) from one encoder pass per batch."""

    def both(net: SpectralTransformerAE, z: torch.Tensor, b: dict) -> tuple[np.ndarray, ...]:
        return _to_numpy(z), _recon(net, z, b)

    z, r = _forward_chunks(model, s, both, batch_size)
    return z.reshape(len(s), model.latent_dim), r.reshape(len(s), s.grid.n_bins)
