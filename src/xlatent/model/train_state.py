"""The resumable state of a training run (``train_state.pt``) and where it is saved.

:class:`TrainState`: everything needed to continue an interrupted run exactly (weights,
optimizer, scheduler, RNG states, epoch, best weights, history). It is saved after every epoch
and read back as data only (:func:`~xlatent.model.checkpoint.torch_load`), every entry checked
against this run before anything is restored (one-line :class:`CheckpointError`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.model.checkpoint import (
    CheckpointError,
    check_grid,
    check_header,
    check_like,
    check_state_dict,
    torch_load,
    torch_save,
)
from xlatent.model.network import SpectralTransformerAE
from xlatent.model.options import TRAIN_ADDED, TrainConfig

STATE_FILE = "train_state.pt"
#: What a stored config without a key meant: the default of the time (train options only;
#: every architecture key has always been stored).
_STORED_DEFAULTS: dict[str, dict] = {"arch": {}, "train": {**asdict(TrainConfig()), **TRAIN_ADDED}}


def set_digest(s: SpectrumSet) -> str:
    """A short hash of a set's spectrum ids and counts (a resume must use the same set)."""
    h = hashlib.sha256("\n".join(s.meta["spec_id"]).encode())
    h.update(np.ascontiguousarray(s.counts).tobytes())
    return h.hexdigest()[:16]


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
            # A key newer than the state (e.g. ``consistency``) stored its default there.
            stored = {**_STORED_DEFAULTS[part], **stored}
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
