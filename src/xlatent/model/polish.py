"""Decoder polish: a few epochs of decoder-only training after the main run.

Latent noise (``TrainConfig.latent_noise``) trains the decoder on noisy latents, which removes
the photon-count direction from the latents but blurs the reconstructions of bright spectra,
whose latents are known far better than the noise says. With ``polish_epochs`` > 0 the
encoder is frozen after the main run (best-validation weights) and the decoder alone trains
on the *exact* latents: the latents, and so everything computed from them, stay as they were,
and the decoder learns to use them sharply. Each polish epoch costs no encoder backward (in
memory, not even an encoder forward: the latents are computed once); the best-validation
decoder is kept (the main run's when no polish epoch beats it). The polish draws its batch
order from its own seeded generator, so a resumed run polishes the same way.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch

from xlatent.model.distributed import Dist, step_function
from xlatent.model.network import SpectralTransformerAE

#: The polish's peak learning rate, as a fraction of ``TrainConfig.lr`` (cosine decay to 0 from
#: there): the decoder only adjusts to latents it already knows.
POLISH_LR = 0.25


def _with_latents(net: SpectralTransformerAE, source: Any) -> Any:
    """An in-memory source whose batches also carry the exact latents ("z"), computed once;
    other sources are returned as they are (the latents are then computed per batch)."""
    if not isinstance(getattr(source, "data", None), dict):  # not MemoryBatches
        return source
    with torch.no_grad():
        z = torch.cat(
            [net.encode(b["feats"], b["glob"]) for b in source.eval_batches(np.arange(source.n))]
        )
    return type(source)({**source.data, "z": z.float()})


def polish_decoder(
    trainer: Any,
    net: SpectralTransformerAE,
    source: Any,
    train: np.ndarray,
    val: np.ndarray,
    dist: Dist,
    best_val: float,
    elapsed: float,
) -> list[dict[str, float]]:
    """Train the decoder of ``net`` alone for ``trainer.cfg.polish_epochs`` epochs on the
    ``train`` rows of ``source`` (latents exact, no noise); keep the decoder with the lowest
    deviance on the ``val`` rows (``best_val``: the main run's). Returns the history records
    (``polish`` = 1; ``epoch`` and ``elapsed_s`` go on from the main run's, ``elapsed``);
    leaves ``net`` in eval mode."""
    cfg = trainer.cfg
    encoder = list(net.encoder.parameters())
    for p in encoder:
        p.requires_grad_(False)
    params = [p for p in net.ordered_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=cfg.lr * POLISH_LR, weight_decay=cfg.weight_decay, betas=(0.9, 0.99)
    )
    steps = math.ceil(len(train) / cfg.batch_size)
    total = max(cfg.polish_epochs * steps, 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total))
    )
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # its own stream (module doc)
    net.eval()
    src = _with_latents(net, source)

    def loss_fn(net: SpectralTransformerAE, b: dict, epoch: int, k: int) -> torch.Tensor:
        if "z" in b:
            z = b["z"]
        else:
            with torch.no_grad():
                z = net.encode(b["feats"], b["glob"])
        return trainer.reconstruction_loss(net, z, b)[0]

    step = step_function(net, loss_fn, dist)
    best_state, history, done = None, [], len(trainer.history)
    try:
        for epoch in range(cfg.polish_epochs):
            t0 = time.perf_counter()
            net.decoder.train()  # the encoder stays in eval mode: exact latents
            tot_loss, tot_n = 0.0, 0
            order = src.epoch_order(train, gen)
            for k, (b, n_batch, n_mine) in enumerate(src.batches(order, steps, cfg.batch_size)):
                value = trainer.optimise(step, b, (epoch, k), (n_batch, n_mine), dist,
                                         (opt, sched, params))  # fmt: skip
                tot_loss += value * n_batch
                tot_n += n_batch
            val_dev = trainer.eval_deviance(net, source, val, dist)
            net.eval()
            if val_dev < best_val:
                best_val, best_state = val_dev, copy.deepcopy(net.state_dict())
            elapsed += time.perf_counter() - t0
            record = {
                "epoch": done + epoch + 1,
                "polish": 1,
                "train_loss": tot_loss / max(tot_n, 1),
                "val_deviance_per_bin": val_dev,
                "lr": opt.param_groups[0]["lr"],
                "elapsed_s": elapsed,
            }
            history.append(record)
            if trainer.callback is not None and dist.main:
                trainer.callback(done + epoch + 1, record)
    finally:
        trainer._share = None
        for p in encoder:
            p.requires_grad_(True)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history
