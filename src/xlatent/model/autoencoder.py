"""The spectral transformer autoencoder: fitting, encoding, reconstruction, checkpoints.

Shape, not amplitude: the decoder predicts a normalised counts shape ``p`` (softmax over bins
of a log photon shape plus log effective area) and the expected source counts are ``N * p``
with ``N`` the observed total net counts (see :mod:`xlatent.model.preprocess`). Exposure and
brightness therefore never need to be in the latent, and the effective-area curve of each
observation is multiplied back in by the decoder rather than learned.

Loss (``loss="poisson"``, default): the Poisson deviance of the observed *source-region*
counts given ``N * p + B`` with ``B`` the known scaled background, summed over bins and
averaged over spectra (reported per bin, so ~1 for a good fit). It is correct at 0, 1, 2
counts per bin, where chi^2 or MSE are not. ``loss="mse"`` compares ``m * p`` with ``m`` times
the observed normalised net spectrum instead, for comparison.

Training: AdamW, linear warm-up then cosine decay over ``epochs``, a seeded validation split
with early stopping on the validation deviance, gradient clipping; the best-validation
weights are kept. With ``checkpoint_dir`` every epoch is checkpointed and ``resume=True``
continues an interrupted run exactly (same result as an uninterrupted one on CPU).
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xlatent.core import SpectrumSet
from xlatent.model.base import LatentModel
from xlatent.model.checkpoint import (
    HEADER_FILE,
    CheckpointError,
    TrainingError,
    check_grid,
    check_header,
    check_like,
    check_state_dict,
    make_header,
    read_header,
    torch_load,
    torch_save,
    write_header,
)
from xlatent.model.network import (
    ArchConfig,
    SpectralTransformerAE,
    check_arch,
    torch_poisson_deviance,
)
from xlatent.model.options import TRAIN_OPTIONS, Opt, check_options
from xlatent.model.preprocess import N_CHANNELS, N_GLOBAL, Prepared, prepare

WEIGHTS_FILE = "weights.pt"
STATE_FILE = "train_state.pt"

PREPROCESSING = {
    "amplitude": "max(sum(counts) - sum(background), 1)",
    "channels": ["log1p(m * net_shape)", "log1p(m * background / total)", "log(A / mean A)"],
    "global": ["log10(total counts) - 2", "background / total"],
    "reconstruction": "amplitude * softmax(decoder logits + log(A / mean A))",
}


@dataclass
class TrainConfig:
    """Optimisation hyper-parameters (stored in checkpoints; resume requires them unchanged)."""

    loss: str = "poisson"
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.05
    val_fraction: float = 0.1
    patience: int = 8
    grad_clip: float = 1.0
    seed: int = 0


class SpectralAutoencoder(LatentModel):
    """Transformer autoencoder mapping a spectrum's shape to a ``latent_dim`` vector.

    Parameters are the :class:`~xlatent.model.network.ArchConfig` fields (architecture) and
    the :class:`TrainConfig` fields (optimisation), plus ``device`` ("auto": CUDA with bf16
    autocast when present, else CPU), ``max_time_s`` (stop after the epoch that passes this
    wall-clock budget), ``num_threads`` (torch CPU threads; default: torch's choice) and
    ``progress`` (a progress bar with train/val loss).
    """

    def __init__(
        self,
        latent_dim: int = 8,
        *,
        device: str = "auto",
        max_time_s: float | None = None,
        num_threads: int | None = None,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        arch_keys = {f.name for f in fields(ArchConfig)} - {"n_bins", "n_channels", "n_global"}
        train_keys = {f.name for f in fields(TrainConfig)}
        unknown = set(kwargs) - arch_keys - train_keys
        if unknown:
            raise TypeError(f"unknown SpectralAutoencoder option(s): {sorted(unknown)}")
        # Every option is checked here, before any work (one-line ValueError).
        arch = check_arch(
            {"latent_dim": latent_dim, **{k: v for k, v in kwargs.items() if k in arch_keys}}
        )
        train = check_options({k: v for k, v in kwargs.items() if k in train_keys}, TRAIN_OPTIONS)
        self.arch = ArchConfig(n_channels=N_CHANNELS, n_global=N_GLOBAL, **arch)
        self.train_cfg = TrainConfig(**train)
        self.device = _check_device(device)
        self.max_time_s = None if max_time_s is None else _MAX_TIME.check("max_time_s", max_time_s)
        self.num_threads = (
            None if num_threads is None else _THREADS.check("num_threads", num_threads)
        )
        self.progress = Opt("bool").check("progress", progress)
        self.grid = None
        self.net: SpectralTransformerAE | None = None
        self.history_: list[dict[str, float]] = []

    @property
    def latent_dim(self) -> int:
        return self.arch.latent_dim

    # ------------------------------------------------------------------ helpers
    def _device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r}: no CUDA device is available")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {self.device!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {self.device!r}: MPS is not available")
        return dev

    def _autocast(self, dev: torch.device) -> Any:
        # bf16 autocast only on CUDA: on CPU it is slower for these small matmuls.
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def _header(self) -> dict:
        config = {"arch": self.arch.to_dict(), "train": asdict(self.train_cfg)}
        return make_header("autoencoder", self.grid, config, PREPROCESSING)

    def _require_fitted(self) -> SpectralTransformerAE:
        if self.net is None:
            raise RuntimeError("the model is not fitted; call fit() or load() first")
        return self.net

    @staticmethod
    def _tensors(p: Prepared, dev: torch.device) -> dict[str, torch.Tensor]:
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

    def _batch_loss(
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
        if self.train_cfg.loss == "poisson":
            return dev.mean(), dev
        mse = ((m * torch.exp(log_p) - data["mse_target"][idx]) ** 2).mean()
        return mse, dev

    # ---------------------------------------------------------------------- fit
    def fit(
        self,
        spectrum_set: SpectrumSet,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        callback: Callable[[int, dict[str, float]], None] | None = None,
    ) -> SpectralAutoencoder:
        """Train on ``spectrum_set``; returns self.

        ``checkpoint_dir``: write ``train_state.pt`` there after every epoch and the final
        model at the end. ``resume=True`` continues the run found there (same set, same
        options), or starts afresh when there is none. ``callback(epoch, record)`` is called
        after each epoch (record: train/val loss, lr, seconds).
        """
        cfg = self.train_cfg
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
        if callback is not None and not callable(callback):
            raise ValueError("callback must be callable")
        n = len(spectrum_set)
        if n < 2:
            raise ValueError(f"need at least 2 spectra to train, the set has {n}")
        n_val = int(round(cfg.val_fraction * n)) if n >= 10 else 0
        if n - n_val < 1:
            raise ValueError(
                f"val_fraction={cfg.val_fraction:g} leaves no training spectra out of {n}"
            )
        dev = self._device()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        self.grid = spectrum_set.grid
        self.arch.n_bins = spectrum_set.grid.n_bins
        prep = prepare(spectrum_set)

        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        state = None
        if resume and ckpt_dir is not None and (ckpt_dir / STATE_FILE).exists():
            state = self._load_state(ckpt_dir, spectrum_set)
        data = self._tensors(prep, dev)

        torch.manual_seed(cfg.seed)
        net = SpectralTransformerAE(self.arch, self.grid.edges_kev).to(dev)
        rng = np.random.default_rng(cfg.seed)
        perm = rng.permutation(n)
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

        opt = torch.optim.AdamW(
            net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99)
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        gen = torch.Generator().manual_seed(cfg.seed)
        start_epoch, best_val, bad, elapsed = 0, math.inf, 0, 0.0
        best_state = copy.deepcopy(net.state_dict())
        self.history_ = []
        finished = False
        if state is not None:
            self._restore_state(ckpt_dir / STATE_FILE, state, net, opt, sched, gen)
            start_epoch = state["epoch"] + 1
            best_val, bad, elapsed = state["best_val"], state["bad_epochs"], state["elapsed_s"]
            best_state = state["best_model"]
            self.history_ = list(state["history"])
            finished = state["finished"]

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
                    with self._autocast(dev):
                        loss, _ = self._batch_loss(net, data, idx)
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"training loss became {loss.item()} at epoch {epoch + 1}, step "
                            f"{k + 1}; check the inputs or lower lr (now {cfg.lr:g})"
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                    opt.step()
                    sched.step()
                    tot_loss += loss.item() * len(idx)
                    tot_n += len(idx)
                train_loss = tot_loss / tot_n
                val_dev = self._eval_deviance(net, data, val_idx if n_val else train_idx, dev)
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
                self.history_.append(record)
                stop = bad >= cfg.patience or (
                    self.max_time_s is not None and elapsed >= self.max_time_s
                )
                finished = stop or epoch + 1 == cfg.epochs
                if ckpt_dir is not None:
                    self._save_state(
                        ckpt_dir, spectrum_set, net, opt, sched, gen, epoch, best_val, bad,
                        elapsed, best_state, finished,
                    )  # fmt: skip
                if bar is not None:
                    bar.set_postfix(train=f"{train_loss:.4g}", val=f"{val_dev:.4g}")
                    bar.update(1)
                if callback is not None:
                    callback(epoch + 1, record)
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()
        net.load_state_dict(best_state)
        net.eval()
        self.net = net
        if ckpt_dir is not None:
            self.save(ckpt_dir)
        return self

    def _eval_deviance(
        self,
        net: SpectralTransformerAE,
        data: dict[str, torch.Tensor],
        idx: torch.Tensor,
        dev: torch.device,
        chunk: int = 4096,
    ) -> float:
        net.eval()
        total = 0.0
        with torch.inference_mode():
            for k in range(0, len(idx), chunk):
                with self._autocast(dev):
                    _, d = self._batch_loss(net, data, idx[k : k + chunk])
                total += float(d.sum())
        net.train()
        return total / max(len(idx), 1)

    @staticmethod
    def _set_digest(s: SpectrumSet) -> str:
        h = hashlib.sha256("\n".join(s.meta["spec_id"]).encode())
        h.update(np.ascontiguousarray(s.counts).tobytes())
        return h.hexdigest()[:16]

    def _save_state(
        self, ckpt_dir: Path, s: SpectrumSet, net: Any, opt: Any, sched: Any, gen: Any,
        epoch: int, best_val: float, bad: int, elapsed: float, best_state: dict, finished: bool,
    ) -> None:  # fmt: skip
        torch_save(
            {
                "header": self._header(),
                "set_digest": self._set_digest(s),
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch,
                "best_val": best_val,
                "bad_epochs": bad,
                "elapsed_s": elapsed,
                "best_model": best_state,
                "history": self.history_,
                "finished": finished,
            },
            ckpt_dir / STATE_FILE,
        )

    def _load_state(self, ckpt_dir: Path, s: SpectrumSet) -> dict:
        """Read ``train_state.pt`` (data only) and check it belongs to this run and set."""
        where = ckpt_dir / STATE_FILE
        state = torch_load(where)
        if not isinstance(state, dict):
            raise CheckpointError(f"{where}: not an xlatent training state")
        for key in state:
            if key not in _STATE_TYPES:
                raise CheckpointError(f"{where}: unexpected entry {str(key)[:60]!r}")
        for key, types in _STATE_TYPES.items():
            if key not in state:
                raise CheckpointError(f"{where}: no {key!r}; not a complete training state")
            value = state[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise CheckpointError(
                    f"{where}: {key!r} is a {type(value).__name__}, not a "
                    f"{' or '.join(t.__name__ for t in types)}"
                )
        header = check_header(state["header"], where, kind="autoencoder")
        check_grid(header, s.grid, where)
        mine = self._header()["config"]
        for part in ("arch", "train"):
            theirs = header["config"][part]
            diff = [k for k in mine[part] if mine[part][k] != theirs.get(k)]
            if diff:
                k = diff[0]
                raise CheckpointError(
                    f"{where}: cannot resume, {k}={theirs.get(k)!r} there but {mine[part][k]!r} now"
                )
        if state["set_digest"] != self._set_digest(s):
            raise CheckpointError(f"{where}: cannot resume on a different training set")
        epoch, bad = state["epoch"], state["bad_epochs"]
        if not 0 <= epoch < self.train_cfg.epochs:
            raise CheckpointError(f"{where}: epoch {epoch} out of range")
        if not 0 <= bad <= epoch + 1:
            raise CheckpointError(f"{where}: bad_epochs {bad} out of range")
        if not math.isfinite(state["best_val"]):
            raise CheckpointError(f"{where}: best_val {state['best_val']} is not finite")
        if not (math.isfinite(state["elapsed_s"]) and state["elapsed_s"] >= 0):
            raise CheckpointError(f"{where}: elapsed_s {state['elapsed_s']} out of range")
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
            raise CheckpointError(f"{where}: history is not one record of numbers per epoch")
        return state

    @staticmethod
    def _restore_state(
        where: Path, state: dict, net: Any, opt: Any, sched: Any, gen: torch.Generator
    ) -> None:
        """Check every tensor and structure of a loaded state against this run, then load it."""
        reference = net.state_dict()
        check_state_dict(state["model"], reference, where, "model")
        check_state_dict(state["best_model"], reference, where, "best_model")
        optim = state["optimizer"]
        if not isinstance(optim, dict) or set(optim) != {"state", "param_groups"}:
            raise CheckpointError(f"{where}: optimizer is not an optimizer state")
        check_like(
            optim["param_groups"], opt.state_dict()["param_groups"], where, "optimizer groups"
        )
        params = list(net.parameters())
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
        check_like(state["scheduler"], sched.state_dict(), where, "scheduler")
        check_like(state["generator"], gen.get_state(), where, "generator")
        check_like(state["torch_rng"], torch.get_rng_state(), where, "torch_rng")
        try:
            net.load_state_dict(state["model"])
            opt.load_state_dict(optim)
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{where}: cannot restore the training state ({msg})") from None

    # ---------------------------------------------------------------- inference
    def _check_set(self, s: SpectrumSet) -> None:
        self._require_fitted()
        check_grid(self._header(), s.grid, "model")

    def _forward_chunks(
        self, s: SpectrumSet, fn: Callable[[SpectralTransformerAE, dict], torch.Tensor],
        batch_size: int,
    ) -> np.ndarray:  # fmt: skip
        self._check_set(s)
        net = self._require_fitted()
        dev = next(net.parameters()).device
        prep = prepare(s)
        out = []
        net.eval()
        with torch.inference_mode():
            for k in range(0, len(s), batch_size):
                sl = slice(k, k + batch_size)
                batch = {
                    "feats": torch.as_tensor(prep.features[sl], dtype=torch.float32, device=dev),
                    "glob": torch.as_tensor(
                        prep.global_features[sl], dtype=torch.float32, device=dev
                    ),
                    "log_area": torch.as_tensor(prep.log_area[sl], dtype=torch.float32, device=dev),
                    "amp": prep.amplitude[sl],
                }
                with self._autocast(dev):
                    out.append(fn(net, batch))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def transform(self, spectrum_set: SpectrumSet, batch_size: int = 512) -> np.ndarray:
        """Latent vectors, (n, latent_dim) float64."""
        batch_size = Opt("int", lo=1).check("batch_size", batch_size)

        def enc(net: SpectralTransformerAE, b: dict) -> np.ndarray:
            return net.encode(b["feats"], b["glob"]).float().cpu().numpy().astype(np.float64)

        z = self._forward_chunks(spectrum_set, enc, batch_size)
        return z.reshape(len(spectrum_set), self.latent_dim)

    def reconstruct(self, spectrum_set: SpectrumSet, batch_size: int = 512) -> np.ndarray:
        """Expected *source* counts per bin (n, m): amplitude times the decoded shape."""
        batch_size = Opt("int", lo=1).check("batch_size", batch_size)

        def rec(net: SpectralTransformerAE, b: dict) -> np.ndarray:
            z = net.encode(b["feats"], b["glob"]).float()
            p = torch.exp(net.log_shape(z, b["log_area"])).double().cpu().numpy()
            return p * b["amp"][:, None]

        out = self._forward_chunks(spectrum_set, rec, batch_size)
        return out.reshape(len(spectrum_set), spectrum_set.grid.n_bins)

    def decode(
        self, latents: np.ndarray, effective_area_cm2: np.ndarray | None = None
    ) -> np.ndarray:
        """Normalised counts shapes (n, m) for given latents (flat area when none is given)."""
        net = self._require_fitted()
        dev = next(net.parameters()).device
        lat = np.asarray(latents, dtype=np.float64)
        if lat.ndim != 2 or lat.shape[1] != self.latent_dim or not np.isfinite(lat).all():
            raise ValueError(
                f"latents must be finite, shape (n, {self.latent_dim}); got {lat.shape}"
            )
        z = torch.as_tensor(lat, dtype=torch.float32, device=dev)
        if effective_area_cm2 is None:
            log_area = torch.zeros(z.shape[0], self.arch.n_bins, device=dev)
        else:
            from xlatent.model.preprocess import log_relative_area

            area = np.atleast_2d(np.asarray(effective_area_cm2, dtype=np.float64))
            if area.shape not in ((z.shape[0], self.arch.n_bins), (1, self.arch.n_bins)):
                raise ValueError(
                    f"effective_area_cm2 must be ({z.shape[0]}, {self.arch.n_bins}) or "
                    f"({self.arch.n_bins},); got {np.shape(effective_area_cm2)}"
                )
            if not (np.isfinite(area).all() and (area >= 0).all()):
                raise ValueError("effective_area_cm2 must be finite and >= 0")
            la = np.ascontiguousarray(
                np.broadcast_to(log_relative_area(area), (z.shape[0], self.arch.n_bins))
            )
            log_area = torch.as_tensor(la, dtype=torch.float32, device=dev)
        with torch.inference_mode():
            return torch.exp(net.log_shape(z, log_area)).double().cpu().numpy()

    # ------------------------------------------------------------------- disk
    def save(self, model_dir: str | Path) -> Path:
        """Write ``model.json`` and ``weights.pt`` into ``model_dir`` (atomically each)."""
        net = self._require_fitted()
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        header = self._header()
        header["training"] = {"history": self.history_}
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        torch_save({"header": header, "model": state}, d / WEIGHTS_FILE)
        write_header(d, header)
        return d

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto") -> SpectralAutoencoder:
        """Load a model saved by :meth:`save` (refuses other kinds and format versions).

        ``model.json`` and ``weights.pt`` are checked field by field before anything is built;
        ``weights.pt`` is read as data only (no pickled code). Anything wrong is a one-line
        :class:`CheckpointError` naming the file.
        """
        from xlatent.core import EnergyGrid

        d = Path(model_dir)
        header = read_header(d, kind="autoencoder")
        wpath = d / WEIGHTS_FILE
        blob = torch_load(wpath)
        if not isinstance(blob, dict) or set(blob) != {"header", "model"}:
            raise CheckpointError(f"{wpath}: not an xlatent weights file")
        wheader = check_header(blob["header"], wpath, kind="autoencoder")
        if (
            wheader["config"]["arch"] != header["config"]["arch"]
            or wheader["grid_edges_kev"] != header["grid_edges_kev"]
        ):
            raise CheckpointError(
                f"{wpath}: written for another model than {d / HEADER_FILE} "
                "(architecture or grid differ)"
            )
        arch = dict(header["config"]["arch"])
        train = header["config"]["train"]
        latent_dim = arch.pop("latent_dim")
        for k in ("n_bins", "n_channels", "n_global"):
            arch.pop(k)
        model = cls(latent_dim, device=device, progress=False, **arch, **train)
        model.arch.n_bins = header["config"]["arch"]["n_bins"]
        model.grid = EnergyGrid(np.asarray(header["grid_edges_kev"]))
        # Shapes from a network on the meta device: nothing is allocated before the check.
        with torch.device("meta"):
            reference = SpectralTransformerAE(model.arch, model.grid.edges_kev).state_dict()
        check_state_dict(blob["model"], reference, wpath)
        net = SpectralTransformerAE(model.arch, model.grid.edges_kev)
        try:
            net.load_state_dict(blob["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{wpath}: weights do not match {HEADER_FILE} ({msg})") from None
        net.to(model._device()).eval()
        model.net = net
        model.history_ = header.get("training", {}).get("history", [])
        return model


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
_MAX_TIME = Opt("float", lo=0.0, allow_inf=True)
_THREADS = Opt("int", lo=1)
_DEVICE_TYPES = ("cpu", "cuda", "mps")


def _check_device(device: Any) -> str:
    """``"auto"`` or a torch device string of a known type (ValueError otherwise)."""
    bad = ValueError(
        f"device must be 'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps', not {device!r}"
    )
    if not isinstance(device, str):
        raise bad
    if device == "auto":
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise bad from None
    if dev.type not in _DEVICE_TYPES:
        raise bad
    return device
