"""Consistency training: each batch seen again through another instrument, with fewer photons.

The encoder is given log(A / mean A) as an input channel, but reconstruction alone never asks
the latent to *ignore* the instrument. With ``TrainConfig.consistency`` = w > 0, every training
batch gets an augmented copy and the loss becomes

    deviance(original) + deviance(copy) + w * deviance(original | z_copy)

the last term being the original's counts scored against the *copy's* latent decoded through
the *original's* effective area (the training loop's ``step_loss``): the copy's latent must
describe the same source as the original's, whatever the instrument and the photon count it
was seen with. The copy must also reconstruct its *own* counts through its *own* area, so
the decoder and the instrument path stay honest. The term is in the units of the
reconstruction loss and cannot be lowered by collapsing or rescaling the latents. (A term
in latent space, |z_copy - sg(z)|^2 over the batch's latent variance, was tried first and
gamed in training: one latent direction that survives the augmentation grew to 40 times the
others and dominated the variance.) w rises linearly from 0 over the first
:data:`RAMP_FRACTION` of the steps, while the encoder is still random.

The copy (:func:`augment`), from the observed counts only (it must work on real data, where
there is no noiseless truth; the model package may not import the simulator):

- *another instrument*: the effective-area curve A' of another spectrum of the batch (a random
  permutation). The source's photon shape is about (counts - background) / A per bin, so the
  expected counts through A' are the observed ones times q_i = A'_i / A_i (per bin, capped at
  :data:`MAX_AREA_RATIO`; renormalised so that the net total stays the same). Only the
  effective area changes: the redistribution (RMF) of the two observations differs too, but
  on the grid's bins the area is most of the instrument's effect on a spectrum's shape.
- *fewer photons*: q is multiplied by a factor f drawn log-uniformly in :data:`THIN_RANGE`.

The new counts are drawn so that they are again Poisson with mean q times the original mean:
binomial thinning where q <= 1 (each observed count kept with probability q; exact for a
Poisson variable) plus Poisson(max(q - 1, 0) * counts) where q > 1. Background expectations are
scaled by the same q, so each bin keeps its background share. The copy's inputs are then
computed exactly as :func:`~xlatent.model.preprocess.prepare` computes them (:func:`batch_tensors`).
"""

from __future__ import annotations

import numpy as np
import torch

from xlatent.model.pileup import LAM_FEATURE_SCALE

#: Range of the photon thinning factor f (drawn log-uniformly): down to a tenth of the counts.
THIN_RANGE = (0.1, 1.0)
#: The consistency weight rises linearly from 0 over this fraction of the training steps.
RAMP_FRACTION = 0.25
#: Cap on the per-bin area ratio A'/A: bins near the area floor would otherwise explode.
MAX_AREA_RATIO = 20.0


def consistency_ramp(step: int, total_steps: int) -> float:
    """The fraction of the consistency weight applied at ``step`` (0-based) of ``total_steps``."""
    return min(1.0, (step + 1) / max(1.0, RAMP_FRACTION * total_steps))


def step_generator(seed: int, epoch: int, step: int, device: torch.device) -> torch.Generator:
    """A generator for one training step's augmentation, a function of (seed, epoch, step).

    Deriving it rather than carrying it keeps a resumed run identical to an uninterrupted one
    without a new entry in ``train_state.pt``, and works on any device.
    """
    word = np.random.SeedSequence([seed, epoch, step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(word) >> 1)


def batch_tensors(
    counts: torch.Tensor, background: torch.Tensor, log_area: torch.Tensor, pileup: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The entries of :func:`~xlatent.model.training.training_tensors` for (B, m) counts,
    background and log relative area and (B, 2) pile-up inputs, computed in torch (float32)
    as ``prepare`` does."""
    m = counts.shape[1]
    total = counts.sum(1)
    btot = background.sum(1)
    net = (counts - background).clamp_min(0.0)
    ntot = net.sum(1, keepdim=True)
    has = ntot > 0
    y = torch.where(has, net / torch.where(has, ntot, 1.0), 0.0)
    denom = total.clamp_min(1.0)
    feats = torch.stack(
        [torch.log1p(m * y), torch.log1p(m * background / denom[:, None]), log_area], dim=-1
    )
    lam_feature = torch.log10(1.0 + LAM_FEATURE_SCALE * pileup[:, 0])
    glob = torch.stack([torch.log10(denom) - 2.0, btot / denom, lam_feature], dim=1)
    clogc = torch.where(counts > 0, counts * torch.log(counts.clamp_min(1.0)), 0.0)
    return {
        "feats": feats,
        "glob": glob,
        "log_area": log_area,
        "pileup": pileup,
        "counts": counts,
        "background": background,
        "log_bkg": torch.log(background),
        "clogc": clogc,
        "log_amp": torch.log((total - btot).clamp_min(1.0)),
        "mse_target": m * y,
    }


def resample(
    counts: torch.Tensor, background: torch.Tensor, q: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts drawn with q times the expectation of ``counts`` per bin, and ``background * q``.

    Binomial thinning where q <= 1, plus Poisson((q - 1) * counts) where q > 1. Non-integer
    counts (PI channels apportioned to grid bins) are first rounded stochastically, which
    keeps their expectation.
    """
    floor = torch.floor(counts)
    frac = counts - floor
    c = floor + (torch.rand(counts.shape, generator=gen, device=counts.device) < frac)
    kept = torch.binomial(c, q.clamp(0.0, 1.0), generator=gen)
    extra = torch.poisson((q - 1.0).clamp_min(0.0) * c, generator=gen)
    return kept + extra, background * q


def area_ratio(
    counts: torch.Tensor,
    background: torch.Tensor,
    log_area: torch.Tensor,
    new_log_area: torch.Tensor,
) -> torch.Tensor:
    """Per-bin A'/A (capped), renormalised so that the net counts keep their total."""
    r = torch.exp(new_log_area - log_area).clamp(max=MAX_AREA_RATIO)
    net = (counts - background).clamp_min(0.0)
    now, then = net.sum(1, keepdim=True), (net * r).sum(1, keepdim=True)
    scale = torch.where(then > 0, now / torch.where(then > 0, then, 1.0), 1.0)
    return r * scale


def augment(
    batch: dict[str, torch.Tensor], gen: torch.Generator, mode: str = "area+thin"
) -> dict[str, torch.Tensor]:
    """The augmented copy of a batch (entries as :func:`batch_tensors`): each spectrum with a
    log-uniform fraction of its photons, through another spectrum's effective area
    (``mode="area+thin"``) or its own (``"thin"``)."""
    counts, background, log_area = batch["counts"], batch["background"], batch["log_area"]
    n, dev = counts.shape[0], counts.device
    perm = torch.randperm(n, generator=gen, device=dev)
    if mode == "thin":
        perm = torch.arange(n, device=dev)
    lo, hi = np.log(THIN_RANGE[0]), np.log(THIN_RANGE[1])
    factor = torch.exp(lo + (hi - lo) * torch.rand(n, generator=gen, device=dev))
    new_log_area = log_area[perm]
    q = factor[:, None] * area_ratio(counts, background, log_area, new_log_area)
    new_counts, new_background = resample(counts, background, q, gen)
    # Its own pile-up: fewer photons at the same rate per frame, as a shorter exposure.
    return batch_tensors(new_counts, new_background, new_log_area, batch["pileup"])
