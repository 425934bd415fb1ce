"""The model options: their groups, declared types and ranges, checked before any work is done.

One dataclass and one table per option group (architecture :class:`ArchConfig`, optimisation
:class:`TrainConfig`, PCA), plus the run options (device, time budget, threads, progress) of
the autoencoder. The same tables check the options
a person passes to an estimator (:class:`ValueError`, before any training) and the ``config``
read back from a model directory (turned into a :class:`CheckpointError` naming the file),
so a saved model can never hold an option that the estimator would have refused.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Opt:
    """One option: ``kind`` int | float | bool | str, optional bounds or choices.

    ``lo``/``hi`` are inclusive unless ``lo_open``/``hi_open``; floats must be finite unless
    ``allow_inf``.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    allow_inf: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
            self.kind, "a string"
        )
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return what + (" " + " and ".join(parts) if parts else "")

    def check(self, name: str, value: Any) -> Any:
        """``value`` as a plain Python int/float/bool/str, or a one-line ValueError."""
        bad = ValueError(f"{name} must be {self.describe()}, not {_short(value)}")
        if self.kind == "bool":
            if isinstance(value, bool) or type(value).__name__ == "bool_":
                return bool(value)
            raise bad
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise bad
            return value
        if isinstance(value, bool) or type(value).__name__ == "bool_":
            raise bad
        if self.kind == "int":
            if not isinstance(value, numbers.Integral):
                raise bad
            value = int(value)
        else:
            if not isinstance(value, numbers.Real):
                raise bad
            value = float(value)
            if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
                raise bad
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            raise bad
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            raise bad
        return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_options(
    values: Mapping[str, Any],
    table: Mapping[str, Opt],
    *,
    required: Iterable[str] = (),
    prefix: str = "",
) -> dict[str, Any]:
    """Check ``values`` against ``table``; returns them normalised to plain Python types.

    Unknown names and missing ``required`` names are errors too (ValueError, one line;
    ``prefix`` is put before option names in messages, e.g. ``"arch."``).
    """
    if not isinstance(values, Mapping):
        raise ValueError(f"{prefix.rstrip('.') or 'options'} must be a JSON object")
    for key in values:
        if key not in table:
            raise ValueError(f"unknown config key {prefix + str(key)!r}")
    for key in required:
        if key not in values:
            raise ValueError(f"missing config key {prefix + key!r}")
    return {k: table[k].check(prefix + k, v) for k, v in values.items()}


@dataclass
class ArchConfig:
    """Architecture hyper-parameters (stored in checkpoints)."""

    n_bins: int = 128
    latent_dim: int = 8
    patch_size: int = 4
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 128
    n_freqs: int = 8
    decoder: str = "mlp"  # a key of xlatent.model.network.DECODERS
    decoder_hidden: int = 256
    decoder_layers: int = 2
    dropout: float = 0.0
    area_aware: bool = True
    n_channels: int = 3
    n_global: int = 2
    #: Half-width in grid bins of the detector's energy redistribution after the effective
    #: area (0: none, the area alone; :class:`xlatent.model.network.InstrumentResponse`).
    redistribution: int = 0
    #: Highest number of photons piled into one event in the decoder (0: no pile-up;
    #: 2-4: ACIS pile-up from the observed count rate, :mod:`xlatent.model.pileup`).
    #: Models saved without the field have 0.
    pileup_orders: int = 3
    #: Gauss-Newton steps on each bright spectrum's latent at encode time (0: the encoder's
    #: latent; :mod:`xlatent.model.refine`), for spectra with >= ``refine_min_counts`` net
    #: counts.
    refine_steps: int = 1
    refine_min_counts: float = 0.0
    #: Width of the refinement's Gaussian prior centred on the encoder's latent, in latent
    #: units (:mod:`xlatent.model.refine`). Models saved without the field have 0.2.
    refine_prior_sigma: float = 0.5
    #: Give the encoder a fourth per-bin channel, the net shape divided by the relative
    #: effective area (:func:`xlatent.model.network.with_photon_channel`). Models saved
    #: without the field have none.
    photon_channel: bool = True

    @property
    def n_tokens(self) -> int:
        return math.ceil(self.n_bins / self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)


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
    #: Weight of the consistency term (0: off; see :mod:`xlatent.model.augment`).
    consistency: float = 0.3
    #: The augmented copy of consistency training: "area+thin" (another spectrum's effective
    #: area and fewer photons) or "thin" (fewer photons only).
    augment: str = "thin"
    #: Weight of the contrastive term between each spectrum's latent and its augmented copy's
    #: (0: off; see :mod:`xlatent.model.contrastive`); the copy is ``augment``'s.
    contrastive: float = 0.0
    #: Gaussian noise added to the latents in training, in units of each latent's batch
    #: standard deviation (0: off): bounds what a latent direction can carry.
    latent_noise: float = 0.3
    #: Count-aware latent noise: above this many net counts N the noise shrinks as
    #: sqrt(latent_noise_counts / N), as a latent's real uncertainty does (0: the same for all).
    latent_noise_counts: float = 300.0
    #: Epochs of decoder-only training after the main run, on the exact latents (0: none):
    #: the encoder and so the latents stay as they are (:mod:`xlatent.model.polish`).
    polish_epochs: int = 0


#: Types and ranges of the :class:`ArchConfig` fields.
ARCH_OPTIONS: dict[str, Opt] = {
    "n_bins": Opt("int", lo=1),
    "latent_dim": Opt("int", lo=1),
    "patch_size": Opt("int", lo=1),
    "d_model": Opt("int", lo=1),
    "n_heads": Opt("int", lo=1),
    "n_layers": Opt("int", lo=1),
    "ff_dim": Opt("int", lo=1),
    "n_freqs": Opt("int", lo=0),
    "decoder": Opt("str", choices=("mlp", "transformer")),
    "decoder_hidden": Opt("int", lo=1),
    "decoder_layers": Opt("int", lo=0),
    "dropout": Opt("float", lo=0.0, hi=1.0, hi_open=True),
    "area_aware": Opt("bool"),
    "n_channels": Opt("int", lo=1),
    "n_global": Opt("int", lo=1),
    "redistribution": Opt("int", lo=0, hi=32),
    "pileup_orders": Opt("int", lo=0, hi=4),
    "refine_steps": Opt("int", lo=0, hi=1000),
    "refine_min_counts": Opt("float", lo=0.0),
    "refine_prior_sigma": Opt("float", lo=0.0, lo_open=True),
    "photon_channel": Opt("bool"),
}

#: Architecture fields added after checkpoint format 1's first models, with the value that
#: reproduces those models: a stored config without them takes these.
ARCH_ADDED: dict[str, Any] = {
    "redistribution": 0,
    "pileup_orders": 0,
    "refine_steps": 0,
    "refine_min_counts": 1000.0,
    "refine_prior_sigma": 0.2,
    "photon_channel": False,
}


#: Training fields added after checkpoint format 1's first models, with their value before
#: they were stored (off): a stored config without them meant these, not today's defaults.
TRAIN_ADDED: dict[str, Any] = {
    "consistency": 0.0,
    "augment": "area+thin",
    "contrastive": 0.0,
    "latent_noise": 0.0,
    "latent_noise_counts": 0.0,
    "polish_epochs": 0,
}


def check_arch(values: dict, *, required: bool = False, prefix: str = "") -> dict:
    """Check architecture options (types, ranges, and the ones that constrain each other).

    Returns them normalised; raises a one-line ValueError. ``required``: every field must be
    present (a stored config; those of :data:`ARCH_ADDED` take their old value when absent),
    else only the given ones are checked (user options).
    """
    if required and isinstance(values, Mapping):
        values = {**ARCH_ADDED, **values}
    out = check_options(
        values, ARCH_OPTIONS, required=ARCH_OPTIONS if required else (), prefix=prefix
    )
    full = {**ArchConfig().to_dict(), **out}
    if full["d_model"] % full["n_heads"]:
        raise ValueError(
            f"{prefix}d_model ({full['d_model']}) must be a multiple of "
            f"{prefix}n_heads ({full['n_heads']})"
        )
    if full["decoder"] == "transformer" and full["decoder_layers"] < 1:
        raise ValueError(f"{prefix}decoder_layers must be >= 1 with the transformer decoder")
    return out


#: Types and ranges of the autoencoder's optimisation options (``TrainConfig``).
TRAIN_OPTIONS: dict[str, Opt] = {
    "loss": Opt("str", choices=("poisson", "mse")),
    "epochs": Opt("int", lo=1),
    "batch_size": Opt("int", lo=1),
    "lr": Opt("float", lo=0.0, lo_open=True),
    "weight_decay": Opt("float", lo=0.0),
    "warmup_frac": Opt("float", lo=0.0, hi=1.0),
    "val_fraction": Opt("float", lo=0.0, hi=1.0, hi_open=True),
    "patience": Opt("int", lo=1),
    "grad_clip": Opt("float", lo=0.0, lo_open=True),
    "seed": Opt("int", lo=0, hi=2**63 - 1),
    "consistency": Opt("float", lo=0.0),
    "augment": Opt("str", choices=("area+thin", "thin")),
    "contrastive": Opt("float", lo=0.0),
    "latent_noise": Opt("float", lo=0.0),
    "latent_noise_counts": Opt("float", lo=0.0),
    "polish_epochs": Opt("int", lo=0),
}

#: Types and ranges of the autoencoder's run options (``None``: no budget / torch's choice).
RUN_OPTIONS: dict[str, Opt] = {
    "max_time_s": Opt("float", lo=0.0, allow_inf=True),
    "num_threads": Opt("int", lo=1),
    "progress": Opt("bool"),
}
_DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: Any) -> str:
    """``"auto"`` or a torch device string of a known type (ValueError otherwise)."""
    import torch

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


#: Types and ranges of the PCA baseline's options.
PCA_OPTIONS: dict[str, Opt] = {
    "n_components": Opt("int", lo=1),
    # scikit-learn's random_state takes 0 .. 2**32 - 1.
    "seed": Opt("int", lo=0, hi=2**32 - 1),
}
