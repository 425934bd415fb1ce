"""The autoencoder's training loop.

:class:`Trainer`: AdamW, linear warm-up then cosine decay over ``epochs``, a seeded validation
split with early stopping on the validation deviance, gradient clipping, a wall-clock budget,
a progress bar and a per-epoch callback; the best-validation weights are kept. With
``consistency`` > 0 each batch also trains on an augmented copy (another instrument, fewer
photons) whose latent, decoded through the original's area, must reconstruct the original's
counts (:mod:`xlatent.model.augment`).

The batches come from a *source*: :class:`MemoryBatches` (the prepared set's tensors, as
always) or :class:`~xlatent.model.streaming.StreamBatches` (blocks read from a lazy view);
with a :class:`~xlatent.model.distributed.Dist` of several ranks each rank gets its share.

The resumable state of a run (:class:`TrainState`, ``train_state.pt``) is
:mod:`xlatent.model.train_state`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlatent.model.augment import augment, consistency_ramp, step_generator
from xlatent.model.checkpoint import TrainingError
from xlatent.model.contrastive import info_nce
from xlatent.model.distributed import Dist, step_function
from xlatent.model.network import SpectralTransformerAE, autocast, torch_poisson_deviance
from xlatent.model.options import TrainConfig
from xlatent.model.polish import polish_decoder
from xlatent.model.preprocess import Prepared
from xlatent.model.train_state import (
    STATE_FILE,
    Checkpointing,
    TrainState,
    set_digest,
)

__all__ = [
    "STATE_FILE",
    "Callback",
    "Checkpointing",
    "MemoryBatches",
    "TrainState",
    "Trainer",
    "set_digest",
    "split_indices",
    "training_tensors",
    "validation_size",
]
Callback = Callable[[int, dict[str, float]], None]
#: One training step's input: (this rank's batch tensors, rows in the global batch, rows of
#: them this rank holds; a rank with none gets one row of weight 0 so that DDP still syncs).
Batch = tuple[dict[str, torch.Tensor], int, int]


def training_tensors(p: Prepared, dev: torch.device) -> dict[str, torch.Tensor]:
    """The network inputs and the loss targets of a prepared set, float32 on ``dev``."""

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=dev)

    with np.errstate(divide="ignore"):
        log_bkg = np.log(p.background)
    m = p.counts.shape[1]
    net_pos = np.clip(p.counts - p.background, 0, None)
    tot = net_pos.sum(1, keepdims=True)
    target = np.divide(m * net_pos, tot, out=np.zeros_like(net_pos), where=tot > 0)
    return {
        "feats": t(p.features),
        "glob": t(p.global_features),
        "log_area": t(p.log_area),
        "pileup": t(p.pileup),
        "counts": t(p.counts),
        "background": t(p.background),
        "log_bkg": t(log_bkg),
        "clogc": t(np.where(p.counts > 0, p.counts * np.log(np.maximum(p.counts, 1)), 0.0)),
        "log_amp": t(np.log(p.amplitude)),
        "mse_target": t(target),
    }


def validation_size(n: int, val_fraction: float) -> int:
    """Size of the validation split of ``n`` spectra (ValueError if too few to train)."""
    if n < 2:
        raise ValueError(f"need at least 2 spectra to train, the set has {n}")
    n_val = int(round(val_fraction * n)) if n >= 10 else 0
    if n - n_val < 1:
        raise ValueError(f"val_fraction={val_fraction:g} leaves no training spectra out of {n}")
    return n_val


def split_indices(n: int, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (validation, training) row indices of a set of ``n`` spectra, sorted: a seeded
    permutation, so the calibration after training finds the same validation rows."""
    n_val = validation_size(n, cfg.val_fraction)
    perm = np.random.default_rng(cfg.seed).permutation(n)
    return np.sort(perm[:n_val]), np.sort(perm[n_val:])


class MemoryBatches:
    """The batches of a prepared set held in memory (``training_tensors``), in a fresh random
    order every epoch: the source of a single-process in-memory run."""

    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data, self.n = data, len(data["feats"])
        self._train: torch.Tensor | None = None

    def epoch_order(self, train: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        dev = self.data["feats"].device
        if self._train is None:
            self._train = torch.as_tensor(train, device=dev)
        return self._train[torch.randperm(len(self._train), generator=gen).to(dev)]

    def batches(self, order: torch.Tensor, steps: int, size: int) -> Iterator[Batch]:
        for k in range(steps):
            idx = order[k * size : (k + 1) * size]
            yield {key: v[idx] for key, v in self.data.items()}, len(idx), len(idx)

    def eval_batches(self, rows: np.ndarray, chunk: int = 4096) -> Iterator[dict]:
        idx = torch.as_tensor(rows, device=self.data["feats"].device)
        for k in range(0, len(idx), chunk):
            yield {key: v[idx[k : k + chunk]] for key, v in self.data.items()}


class Trainer:
    """Runs the optimisation of ``cfg`` on a network and a prepared set (see module doc)."""

    def __init__(
        self,
        cfg: TrainConfig,
        device: torch.device,
        *,
        max_time_s: float | None = None,
        progress: bool = False,
        callback: Callback | None = None,
    ) -> None:
        self.cfg, self.device = cfg, device
        self.max_time_s, self.progress, self.callback = max_time_s, progress, callback
        self.history: list[dict[str, float]] = []
        self.steps_per_epoch, self.total_steps = 1, 1
        # In a DDP step: this rank's (first row, rows, global batch rows), for latent_noise.
        self.dist, self._share = Dist(device=device), None

    def batch_loss(
        self, net: SpectralTransformerAE, data: dict[str, torch.Tensor], idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, per-spectrum deviance per bin) on the spectra ``idx``."""
        loss, dev, _ = self.loss_on(net, {k: v[idx] for k, v in data.items()})
        return loss, dev

    def loss_on(
        self, net: SpectralTransformerAE, b: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, per-spectrum deviance per bin, latents) of one batch of tensors; in train
        mode with ``latent_noise`` > 0 the decoder sees the latents plus Gaussian noise of
        that many batch standard deviations, times min(1, sqrt(N0 / N)) for a spectrum of N net
        counts with ``latent_noise_counts`` = N0 > 0 (the latents returned are the clean ones)."""
        z = net.encode(b["feats"], b["glob"])
        zd = z
        n_all = len(z) if self._share is None else self._share[2]
        if self.cfg.latent_noise > 0 and net.training and n_all > 1:
            # Scaled by the batch spread (no gradient through it), so the encoder cannot
            # outgrow the noise by inflating the latents: each direction's signal-to-noise
            # is bounded, and the reconstruction decides which directions are worth it.
            sd, noise = self._batch_noise(z)
            scale = self.cfg.latent_noise * sd
            n0 = self.cfg.latent_noise_counts
            if n0 > 0:  # a bright spectrum's latents are known to ~1/sqrt(N): less noise
                scale = scale * torch.exp(0.5 * (math.log(n0) - b["log_amp"])).clamp(max=1)[:, None]
            zd = z + scale * noise
        loss, dev = self.reconstruction_loss(net, zd, b)
        return loss, dev, z

    def _batch_noise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch standard deviation of the latents, standard normal noise like ``z``); in
        a DDP step the global batch's spread and this rank's rows of the global draw, as in
        a single process."""
        if self._share is None:
            return z.detach().float().std(0, keepdim=True), torch.randn_like(z)
        lo, mine, n = self._share
        zz = z.detach().double()[:mine]
        s1, s2 = self.dist.sum_tensor(torch.stack([zz.sum(0), (zz**2).sum(0)]))
        sd = ((s2 - s1**2 / n) / (n - 1)).clamp_min(0).sqrt().float()[None]
        noise = torch.randn((n, z.shape[1]), dtype=z.dtype, device=z.device)
        return sd, noise[lo : lo + len(z)]

    def reconstruction_loss(
        self, net: SpectralTransformerAE, z: torch.Tensor, b: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, per-spectrum deviance per bin) of latents ``z`` decoded through the area of
        the batch ``b`` and compared with its counts."""
        log_p = net.log_shape(z.float(), b["log_area"], b["pileup"])
        m = log_p.shape[1]
        dev = torch_poisson_deviance(
            log_p, b["log_amp"], b["counts"], b["log_bkg"], b["clogc"]
        ) / m  # fmt: skip
        if self.cfg.loss == "poisson":
            return dev.mean(), dev
        mse = ((m * torch.exp(log_p) - b["mse_target"]) ** 2).mean()
        return mse, dev

    def step_loss(
        self, net: SpectralTransformerAE, b: dict[str, torch.Tensor], epoch: int, step: int
    ) -> torch.Tensor:
        """The training loss of one step on the batch tensors ``b``: the batch's, plus with
        ``consistency`` or ``contrastive`` > 0 its augmented copy's reconstruction loss and the
        weighted terms: consistency (the copy's latent decoded through the original's area,
        scored on the original's counts) and contrastive (:func:`info_nce` of the two latents);
        both weights ramp up (:func:`consistency_ramp`)."""
        cfg = self.cfg
        if cfg.consistency == 0 and cfg.contrastive == 0:
            return self.loss_on(net, b)[0]
        ramp = consistency_ramp(epoch * self.steps_per_epoch + step, self.total_steps)
        loss, _, z = self.loss_on(net, b)
        gen = step_generator(cfg.seed, epoch, step, b["feats"].device)
        with torch.no_grad():
            copy_batch = augment(b, gen, cfg.augment)
        loss_copy, _, z_copy = self.loss_on(net, copy_batch)
        loss = loss + loss_copy
        if cfg.consistency:
            cross, _ = self.reconstruction_loss(net, z_copy, b)
            loss = loss + cfg.consistency * ramp * cross
        if cfg.contrastive:
            loss = loss + cfg.contrastive * ramp * info_nce(z, z_copy)
        return loss

    def optimise(self, step: Any, b: dict, at: tuple[int, int], sizes: tuple[int, int],
                 dist: Dist, optim: tuple[Any, Any, list]) -> float:  # fmt: skip
        """One optimiser step on batch ``b`` (``at`` = epoch, step; ``sizes`` = the global
        batch's rows, this rank's): its loss, the global batch's mean on every rank."""
        (epoch, k), (n_batch, n_mine), (opt, sched, params) = at, sizes, optim
        if dist.world > 1:
            self._share = (dist.shard(n_batch)[0], n_mine, n_batch)
        with autocast(self.device):
            loss = step(b, epoch, k)
        value = loss.item()
        if dist.world > 1:  # every rank sees the global value, so all stop together
            value = dist.sum([value * n_mine])[0] / n_batch
            # DDP averages over ranks: this makes it the global batch's mean.
            loss = loss * (n_mine * dist.world / n_batch)
        if not math.isfinite(value):
            raise TrainingError(
                f"training loss became {value} at epoch {epoch + 1}, step "
                f"{k + 1}; check the inputs or lower lr (now {self.cfg.lr:g})"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()
        sched.step()
        return value

    def eval_deviance(
        self, net: SpectralTransformerAE, source: Any, rows: np.ndarray, dist: Dist
    ) -> float:
        """Mean deviance per bin of the spectra ``rows`` of ``source``, summed over ranks (each
        evaluates its share); the network is left in train mode."""
        net.eval()
        total = 0.0
        with torch.inference_mode():
            for b in source.eval_batches(rows):
                with autocast(self.device):
                    _, d, _ = self.loss_on(net, b)
                total += float(d.sum())
        net.train()
        total = dist.sum([total])[0]
        return total / max(len(rows), 1)

    def run(
        self,
        net: SpectralTransformerAE,
        data: dict[str, torch.Tensor] | Any,
        *,
        state: TrainState | None = None,
        checkpoint: Checkpointing | None = None,
        dist: Dist | None = None,
    ) -> list[dict[str, float]]:
        """Train ``net`` (from ``state`` when resuming) on ``data``, the tensors of
        :func:`training_tensors` or a batch source (module doc); leaves it in eval mode with
        the best-validation weights and returns the history (one record per epoch)."""
        cfg, dev = self.cfg, self.device
        dist = self.dist = dist or Dist(device=dev)
        source = MemoryBatches(data) if isinstance(data, dict) else data
        val_np, train_np = split_indices(source.n, cfg)
        n_val = len(val_np)
        steps_per_epoch = math.ceil(len(train_np) / cfg.batch_size)
        total = max(cfg.epochs * steps_per_epoch, 1)
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total
        warm = max(1, int(cfg.warmup_frac * total))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            prog = min(1.0, (step - warm) / max(1, total - warm))
            return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * prog))

        params = net.ordered_parameters()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        gen = torch.Generator().manual_seed(cfg.seed)
        start_epoch, best_val, bad, elapsed = 0, math.inf, 0, 0.0
        best_state = copy.deepcopy(net.state_dict())
        self.history = []
        finished = False
        if state is not None:
            where = checkpoint.path if checkpoint is not None else Path(STATE_FILE)
            state.restore(where, net, opt, sched, gen)
            start_epoch = state.epoch + 1
            best_val, bad, elapsed = state.best_val, state.bad_epochs, state.elapsed_s
            best_state = state.best_model
            self.history = list(state.history)
            finished = state.finished

        step = step_function(net, self.step_loss, dist)
        bar = None
        if self.progress and not finished and dist.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="train", unit="epoch")
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if finished:
                    break
                t0 = time.perf_counter()
                net.train()
                order = source.epoch_order(train_np, gen)
                tot_loss, tot_n = 0.0, 0
                batches = source.batches(order, steps_per_epoch, cfg.batch_size)
                for k, (b, n_batch, n_mine) in enumerate(batches):
                    value = self.optimise(step, b, (epoch, k), (n_batch, n_mine), dist,
                                          (opt, sched, params))  # fmt: skip
                    tot_loss += value * n_batch
                    tot_n += n_batch
                train_loss = tot_loss / tot_n
                val_dev = self.eval_deviance(net, source, val_np if n_val else train_np, dist)
                if not math.isfinite(val_dev):
                    raise TrainingError(
                        f"validation deviance became {val_dev} at epoch {epoch + 1}"
                    )
                if val_dev < best_val * (1 - 1e-4):
                    best_val, bad = val_dev, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    bad += 1
                elapsed += time.perf_counter() - t0
                record = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "val_deviance_per_bin": val_dev,
                    "lr": opt.param_groups[0]["lr"],
                    "elapsed_s": elapsed,
                }
                self.history.append(record)
                stop = bad >= cfg.patience or (
                    self.max_time_s is not None and elapsed >= self.max_time_s
                )
                stop = dist.sum([float(stop)])[0] > 0  # clocks differ between ranks
                finished = stop or epoch + 1 == cfg.epochs
                if checkpoint is not None and dist.main:
                    TrainState(
                        header=checkpoint.header, set_digest=checkpoint.digest,
                        model=net.state_dict(), optimizer=opt.state_dict(),
                        scheduler=sched.state_dict(), generator=gen.get_state(),
                        torch_rng=torch.get_rng_state(), epoch=epoch, best_val=best_val,
                        bad_epochs=bad, elapsed_s=elapsed, best_model=best_state,
                        history=self.history, finished=finished,
                    ).save(checkpoint.path)  # fmt: skip
                if bar is not None:
                    bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_dev:.4g}")
                    bar.update(1)
                if self.callback is not None and dist.main:
                    self.callback(epoch + 1, record)
                if stop:
                    break
        finally:
            self._share = None
            if bar is not None:
                bar.close()
        net.load_state_dict(best_state)
        if cfg.polish_epochs:
            rows = val_np if n_val else train_np
            self.history += polish_decoder(
                self, net, source, train_np, rows, dist, best_val, elapsed
            )
        net.eval()
        return self.history
