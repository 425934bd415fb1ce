"""The autoencoder's training loop and its resumable state (``train_state.pt``).

:class:`Trainer`: AdamW, linear warm-up then cosine decay over ``epochs``, a seeded validation
split with early stopping on the validation deviance, gradient clipping, a wall-clock budget,
a progress bar and a per-epoch callback; the best-validation weights are kept.

:class:`TrainState`: everything needed to continue an interrupted run exactly (weights,
optimizer, scheduler, RNG states, epoch, best weights, history). It is saved after every epoch
and read back as data only (:func:`~xlatent.model.checkpoint.torch_load`), every entry checked
against this run before anything is restored (one-line :class:`CheckpointError`).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.model.checkpoint import (
    CheckpointError,
    TrainingError,
    check_grid,
    check_header,
    check_like,
    check_state_dict,
    torch_load,
    torch_save,
)
from xlatent.model.network import SpectralTransformerAE, autocast, torch_poisson_deviance
from xlatent.model.options import TrainConfig
from xlatent.model.preprocess import Prepared

STATE_FILE = "train_state.pt"
Callback = Callable[[int, dict[str, float]], None]


def set_digest(s: SpectrumSet) -> str:
    """A short hash of a set's spectrum ids and counts (a resume must use the same set)."""
    h = hashlib.sha256("\n".join(s.meta["spec_id"]).encode())
    h.update(np.ascontiguousarray(s.counts).tobytes())
    return h.hexdigest()[:16]


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
        "counts": t(p.counts),
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


@dataclass
class TrainState:
    """The state of a run after an epoch, as saved in ``train_state.pt`` (same keys)."""

    header: dict
    set_digest: str
    model: dict
    optimizer: dict
    scheduler: dict
    generator: torch.Tensor
    torch_rng: torch.Tensor
    epoch: int
    best_val: float
    bad_epochs: int
    elapsed_s: float
    best_model: dict
    history: list
    finished: bool

    def save(self, path: Path) -> None:
        """Write atomically (plain containers and tensors only)."""
        torch_save({f.name: getattr(self, f.name) for f in fields(self)}, path)

    @classmethod
    def load(cls, path: Path, *, header: dict, grid: EnergyGrid, digest: str) -> TrainState:
        """Read ``path`` (data only) and check it belongs to this run: ``header`` (its model
        config), ``grid`` and the training set's ``digest``. Tensors are checked by
        :meth:`restore`."""
        state = torch_load(path)
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: not an xlatent training state")
        for key in state:
            if key not in _STATE_TYPES:
                raise CheckpointError(f"{path}: unexpected entry {str(key)[:60]!r}")
        for key, types in _STATE_TYPES.items():
            if key not in state:
                raise CheckpointError(f"{path}: no {key!r}; not a complete training state")
            value = state[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise CheckpointError(
                    f"{path}: {key!r} is a {type(value).__name__}, not a "
                    f"{' or '.join(t.__name__ for t in types)}"
                )
        theirs = check_header(state["header"], path, kind="autoencoder")
        check_grid(theirs, grid, path)
        for part in ("arch", "train"):
            mine, stored = header["config"][part], theirs["config"][part]
            diff = [k for k in mine if mine[k] != stored.get(k)]
            if diff:
                k = diff[0]
                raise CheckpointError(
                    f"{path}: cannot resume, {k}={stored.get(k)!r} there but {mine[k]!r} now"
                )
        if state["set_digest"] != digest:
            raise CheckpointError(f"{path}: cannot resume on a different training set")
        epoch, bad = state["epoch"], state["bad_epochs"]
        if not 0 <= epoch < header["config"]["train"]["epochs"]:
            raise CheckpointError(f"{path}: epoch {epoch} out of range")
        if not 0 <= bad <= epoch + 1:
            raise CheckpointError(f"{path}: bad_epochs {bad} out of range")
        if not math.isfinite(state["best_val"]):
            raise CheckpointError(f"{path}: best_val {state['best_val']} is not finite")
        if not (math.isfinite(state["elapsed_s"]) and state["elapsed_s"] >= 0):
            raise CheckpointError(f"{path}: elapsed_s {state['elapsed_s']} out of range")
        history = state["history"]
        ok = len(history) == epoch + 1 and all(
            isinstance(rec, dict)
            and all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
                for k, v in rec.items()
            )
            for rec in history
        )
        if not ok:
            raise CheckpointError(f"{path}: history is not one record of numbers per epoch")
        return cls(**state)

    def restore(
        self, where: Path, net: SpectralTransformerAE, opt: Any, sched: Any, gen: torch.Generator
    ) -> None:
        """Check every tensor and structure against this run, then load them into it."""
        reference = net.state_dict()
        check_state_dict(self.model, reference, where, "model")
        check_state_dict(self.best_model, reference, where, "best_model")
        optim = self.optimizer
        if set(optim) != {"state", "param_groups"}:
            raise CheckpointError(f"{where}: optimizer is not an optimizer state")
        check_like(
            optim["param_groups"], opt.state_dict()["param_groups"], where, "optimizer groups"
        )
        params = net.ordered_parameters()
        # AdamW keeps its step count as a float64 scalar under a float64 default, else float32.
        step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        scalar = torch.zeros((), dtype=step_dtype)
        if not isinstance(optim["state"], dict):
            raise CheckpointError(f"{where}: optimizer state is not a dict")
        for idx, st in optim["state"].items():
            if not isinstance(idx, int) or not 0 <= idx < len(params):
                raise CheckpointError(f"{where}: optimizer state for unknown parameter {idx!r}")
            p = params[idx].detach()
            ref = {"step": scalar, "exp_avg": p, "exp_avg_sq": p}
            check_like(st, ref, where, f"optimizer state {idx}")
        check_like(self.scheduler, sched.state_dict(), where, "scheduler")
        check_like(self.generator, gen.get_state(), where, "generator")
        check_like(self.torch_rng, torch.get_rng_state(), where, "torch_rng")
        try:
            net.load_state_dict(self.model)
            opt.load_state_dict(optim)
            sched.load_state_dict(self.scheduler)
            gen.set_state(self.generator)
            torch.set_rng_state(self.torch_rng)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{where}: cannot restore the training state ({msg})") from None


#: What ``train_state.pt`` holds, and the types of its entries.
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "header": (dict,),
    "set_digest": (str,),
    "model": (dict,),
    "optimizer": (dict,),
    "scheduler": (dict,),
    "generator": (torch.Tensor,),
    "torch_rng": (torch.Tensor,),
    "epoch": (int,),
    "best_val": (float, int),
    "bad_epochs": (int,),
    "elapsed_s": (float, int),
    "best_model": (dict,),
    "history": (list,),
    "finished": (bool,),
}


@dataclass
class Checkpointing:
    """Where and as what to save the :class:`TrainState` after every epoch."""

    path: Path
    header: dict
    digest: str


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

    def batch_loss(
        self, net: SpectralTransformerAE, data: dict[str, torch.Tensor], idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, per-spectrum deviance per bin) on the spectra ``idx``."""
        z = net.encode(data["feats"][idx], data["glob"][idx])
        log_p = net.log_shape(z.float(), data["log_area"][idx])
        m = log_p.shape[1]
        dev = torch_poisson_deviance(
            log_p, data["log_amp"][idx], data["counts"][idx], data["log_bkg"][idx],
            data["clogc"][idx],
        ) / m  # fmt: skip
        if self.cfg.loss == "poisson":
            return dev.mean(), dev
        mse = ((m * torch.exp(log_p) - data["mse_target"][idx]) ** 2).mean()
        return mse, dev

    def eval_deviance(
        self, net: SpectralTransformerAE, data: dict, idx: torch.Tensor, chunk: int = 4096
    ) -> float:
        """Mean deviance per bin of the spectra ``idx`` (the network left in train mode)."""
        net.eval()
        total = 0.0
        with torch.inference_mode():
            for k in range(0, len(idx), chunk):
                with autocast(self.device):
                    _, d = self.batch_loss(net, data, idx[k : k + chunk])
                total += float(d.sum())
        net.train()
        return total / max(len(idx), 1)

    def run(
        self,
        net: SpectralTransformerAE,
        data: dict[str, torch.Tensor],
        *,
        state: TrainState | None = None,
        checkpoint: Checkpointing | None = None,
    ) -> list[dict[str, float]]:
        """Train ``net`` (from ``state`` when resuming); leaves it in eval mode with the
        best-validation weights and returns the history (one record per epoch)."""
        cfg, dev = self.cfg, self.device
        n = len(data["feats"])
        n_val = validation_size(n, cfg.val_fraction)
        perm = np.random.default_rng(cfg.seed).permutation(n)
        val_idx = torch.as_tensor(np.sort(perm[:n_val]), device=dev)
        train_idx = torch.as_tensor(np.sort(perm[n_val:]), device=dev)
        steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
        total = max(cfg.epochs * steps_per_epoch, 1)
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

        bar = None
        if self.progress and not finished:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="train", unit="epoch")
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if finished:
                    break
                t0 = time.perf_counter()
                net.train()
                order = train_idx[torch.randperm(len(train_idx), generator=gen).to(dev)]
                tot_loss, tot_n = 0.0, 0
                for k in range(steps_per_epoch):
                    idx = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
                    with autocast(dev):
                        loss, _ = self.batch_loss(net, data, idx)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"training loss became {loss.item()} at epoch {epoch + 1}, step "
                            f"{k + 1}; check the inputs or lower lr (now {cfg.lr:g})"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    opt.step()
                    sched.step()
                    tot_loss += loss.item() * len(idx)
                    tot_n += len(idx)
                train_loss = tot_loss / tot_n
                val_dev = self.eval_deviance(net, data, val_idx if n_val else train_idx)
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
                finished = stop or epoch + 1 == cfg.epochs
                if checkpoint is not None:
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
                if self.callback is not None:
                    self.callback(epoch + 1, record)
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()
        net.load_state_dict(best_state)
        net.eval()
        return self.history
