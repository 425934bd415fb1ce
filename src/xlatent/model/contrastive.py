"""Contrastive training: a spectrum and its augmented copy must pick each other out of a batch.

With ``TrainConfig.contrastive`` = w > 0 each training batch gets the augmented copy of
:mod:`xlatent.model.augment` (another spectrum's effective area and/or fewer photons) and the
loss gains w times the symmetric InfoNCE loss (:func:`info_nce`) between the originals' and the
copies' latents: for each spectrum, the softmax over the batch's copies of
-|z_i - z'_j|^2 / (T d) must point at its own copy, and the other way round.

Reconstruction asks the latent to describe the counts; it never asks that two observations of
one source land close *relative to how far apart different sources are*, which is what a
clustering of the latents (and issue 12's response distance) measures. This term asks exactly
that. It is computed on the latents standardised over the batch (originals and copies together,
with the gradient through the mean and standard deviation), so it cannot be lowered by
rescaling the latents or by growing one direction: a term scaled by the total latent variance
was gamed that way (see :mod:`xlatent.model.augment`), a per-direction standardisation is not,
and squeezing the bulk of a direction to make room for outliers makes the bulk's sources
harder to tell apart, which the same term penalises.

Measured on the demo sky (README, "Fifth round"): it does pull copies together, but it lowers
the k = 8 clustering (0.315 at w = 0.3, against 0.409 without) and the brightest decile's
reconstruction, and makes the latents *more* sensitive to the instrument, presumably because
pushing every other source of the batch away spreads the latents evenly and erases the class
structure. So it is off by default, kept for other views of a source (e.g. real repeat
observations).

In a DDP step each rank contrasts its own rows (its share of the global batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Temperature T of :func:`info_nce`, per latent dimension: two standardised latents a
#: squared distance T * d apart differ by one unit of logit.
TEMPERATURE = 0.25


def info_nce(
    z: torch.Tensor, z_copy: torch.Tensor, temperature: float | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE loss of (B, d) latents ``z`` against their copies' ``z_copy``
    (row i of each is the same source), on latents standardised over both (module doc);
    ``temperature`` defaults to :data:`TEMPERATURE`."""
    temperature = TEMPERATURE if temperature is None else temperature
    both = torch.cat([z, z_copy]).float()
    mu = both.mean(0, keepdim=True)
    sd = both.std(0, keepdim=True).clamp_min(1e-6)
    a, b = (z.float() - mu) / sd, (z_copy.float() - mu) / sd
    d2 = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    logits = -d2 / (temperature * z.shape[1])
    target = torch.arange(len(z), device=z.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
