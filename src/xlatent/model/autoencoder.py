"""The spectral transformer autoencoder: the estimator (fit, encode, reconstruct, save/load).

Shape, not amplitude: the decoder predicts a normalised counts shape ``p`` (softmax over bins
of a log photon shape plus log effective area) and the expected source counts are ``N * p``
with ``N`` the observed total net counts (see :mod:`xlatent.model.preprocess`). Exposure and
brightness therefore never need to be in the latent, and the effective-area curve of each
observation is multiplied back in by the decoder rather than learned.

Loss (``loss="poisson"``, default): the Poisson deviance of the observed *source-region*
counts given ``N * p + B`` with ``B`` the known scaled background, summed over bins and
averaged over spectra (reported per bin, so ~1 for a good fit). It is correct at 0, 1, 2
counts per bin, where chi^2 or MSE are not. ``loss="mse"`` compares ``m * p`` with ``m`` times
the observed normalised net spectrum instead, for comparison. The Poisson loss needs each
spectrum's effective area and background: a set flagging either unknown
(``effective_area_known`` / ``background_known`` False, as Multimodal Universe input is) is
refused with a one-line ``ValueError``; train it with ``loss="mse"``.

Training (:mod:`xlatent.model.training`): AdamW, linear warm-up then cosine decay over
``epochs``, a seeded validation split with early stopping on the validation deviance, gradient
clipping; the best-validation weights are kept. With ``checkpoint_dir`` every epoch is
checkpointed and ``resume=True`` continues an interrupted run exactly (same result as an
uninterrupted one on CPU). The network is :mod:`xlatent.model.network`.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.model import inference
from xlatent.model.base import LatentModel
from xlatent.model.calibration import calibrate, read_calibration
from xlatent.model.checkpoint import (
    HEADER_FILE,
    CheckpointError,
    check_header,
    check_recipe,
    check_state_dict,
    make_header,
    read_header,
    read_training_ids,
    torch_load,
    torch_save,
    write_header,
    write_training_ids,
)
from xlatent.model.inference import DEFAULT_BATCH
from xlatent.model.network import SpectralTransformerAE, resolve_device
from xlatent.model.options import (
    RUN_OPTIONS,
    TRAIN_ADDED,
    TRAIN_OPTIONS,
    ArchConfig,
    TrainConfig,
    check_arch,
    check_device,
    check_options,
)
from xlatent.model.pileup import n_global
from xlatent.model.preprocess import (
    N_CHANNELS,
    check_loss_inputs,
    decode_log_area,
    prepare,
)
from xlatent.model.pretrained import pretrained_dir
from xlatent.model.training import (
    STATE_FILE,
    Callback,
    Checkpointing,
    Trainer,
    TrainState,
    set_digest,
    split_indices,
    training_tensors,
    validation_size,
)

__all__ = ["PREPROCESSING", "STATE_FILE", "WEIGHTS_FILE", "SpectralAutoencoder", "TrainConfig"]

WEIGHTS_FILE = "weights.pt"

PREPROCESSING = {
    "amplitude": "max(sum(counts) - sum(background), 1)",
    "channels": ["log1p(m * net_shape)", "log1p(m * background / total)", "log(A / mean A)"],
    "global": ["log10(total counts) - 2", "background / total"],
    "reconstruction": "amplitude * softmax(decoder logits + log(A / mean A))",
}
#: The ArchConfig fields that are hyper-parameters (the others follow from the data).
_DATA_FIELDS = ("n_bins", "n_channels", "n_global")
_ARCH_PARAMS = tuple(f.name for f in fields(ArchConfig) if f.name not in _DATA_FIELDS)
_TRAIN_PARAMS = tuple(f.name for f in fields(TrainConfig))


class SpectralAutoencoder(LatentModel):
    """Transformer autoencoder mapping a spectrum's shape to a ``latent_dim`` vector.

    Parameters: the architecture (:class:`~xlatent.model.options.ArchConfig` fields), the
    optimisation (:class:`~xlatent.model.options.TrainConfig` fields), and ``device``
    ("auto": CUDA with bf16 autocast when present, else CPU), ``max_time_s`` (stop after the
    epoch that passes this wall-clock budget), ``num_threads`` (torch CPU threads; default:
    torch's choice) and ``progress`` (a progress bar with train/val loss). Each is checked here
    (one-line ValueError) and kept under its name; ``get_params``/``set_params`` as in
    scikit-learn.

    Fitted attributes: ``training_ids_`` (the ``spec_id`` of every spectrum fitted on,
    validation share included; saved as ``training_ids.txt``, so evaluation can score only
    spectra the model never saw), ``grid_`` (the training set's energy grid), ``net_`` (the trained
    :class:`~xlatent.model.network.SpectralTransformerAE`, in eval mode) and ``history_`` (one
    record per epoch: train loss, validation deviance per bin, lr, seconds), ``calibration_``
    (:mod:`~xlatent.model.calibration`: error scale, OOD threshold; None for older models); a
    loaded model also has ``recipe_`` (the training recipe its header records, else None),
    which a refit drops. :meth:`pretrained` loads the model shipped with xlatent.
    """

    kind = "autoencoder"

    def __init__(
        self,
        latent_dim: int = 8,
        *,
        patch_size: int = 4,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        ff_dim: int = 128,
        n_freqs: int = 8,
        decoder: str = "mlp",
        decoder_hidden: int = 256,
        decoder_layers: int = 2,
        dropout: float = 0.0,
        area_aware: bool = True,
        redistribution: int = 0,
        pileup_orders: int = 3,
        refine_steps: int = 1,
        refine_min_counts: float = 0.0,
        refine_prior_sigma: float = 0.5,
        photon_channel: bool = True,
        loss: str = "poisson",
        epochs: int = 40,
        batch_size: int = 256,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_frac: float = 0.05,
        val_fraction: float = 0.1,
        patience: int = 8,
        grad_clip: float = 1.0,
        seed: int = 0,
        consistency: float = 0.3,
        augment: str = "thin",
        contrastive: float = 0.0,
        latent_noise: float = 0.3,
        latent_noise_counts: float = 300.0,
        polish_epochs: int = 0,
        device: str = "auto",
        max_time_s: float | None = None,
        num_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        given = dict(locals())
        # Every option is checked here, before any work (one-line ValueError), and kept as
        # the plain Python value (the same object when it was one).
        checked = {
            **check_arch({k: given[k] for k in _ARCH_PARAMS}),
            **check_options({k: given[k] for k in _TRAIN_PARAMS}, TRAIN_OPTIONS),
            "device": check_device(device),
        }
        for name, opt in RUN_OPTIONS.items():
            value = given[name]
            checked[name] = None if value is None and name != "progress" else opt.check(name, value)
        for name, value in checked.items():
            setattr(self, name, value)

    # -------------------------------------------------------------- configuration
    def _arch(self, n_bins: int) -> ArchConfig:
        """The architecture for a grid of ``n_bins`` bins."""
        params = {k: getattr(self, k) for k in _ARCH_PARAMS}
        n_glob = n_global(params["pileup_orders"])
        return ArchConfig(n_bins=n_bins, n_channels=N_CHANNELS, n_global=n_glob, **params)

    @property
    def train_cfg(self) -> TrainConfig:
        """The optimisation hyper-parameters, as one config (read-only view)."""
        return TrainConfig(**{k: getattr(self, k) for k in _TRAIN_PARAMS})

    @property
    def arch(self) -> ArchConfig:
        """The architecture (read-only view; ``n_bins`` of the fitted grid, else the default)."""
        grid = getattr(self, "grid_", None)
        return self._arch(grid.n_bins if grid is not None else ArchConfig.n_bins)

    @property
    def net(self) -> SpectralTransformerAE | None:
        """``net_`` when fitted, else None (the name before issue 11)."""
        return getattr(self, "net_", None)

    def _header(self, arch: ArchConfig, grid: EnergyGrid) -> dict:
        config = {"arch": arch.to_dict(), "train": asdict(self.train_cfg)}
        prep = dict(PREPROCESSING)
        if arch.redistribution:
            prep["reconstruction"] = "amplitude * normalised(softmax(decoder logits + "
            prep["reconstruction"] += "log(A / mean A)) @ learned redistribution)"
        if arch.refine_steps:
            which = (
                f"spectra with >= {arch.refine_min_counts:g} net counts"
                if arch.refine_min_counts > 0
                else "every spectrum"
            )
            prep["latent"] = (
                f"encoder output, then {arch.refine_steps} Gauss-Newton steps on the Poisson "
                f"deviance for {which}, a Gaussian prior of width "
                f"{arch.refine_prior_sigma:g} at the encoder's latent"
            )
        if arch.pileup_orders:
            prep["global"] = [*prep["global"], "log10(1 + 100 lam)"]
            prep["pileup"] = (
                f"ACIS pile-up up to {arch.pileup_orders} photons per event from "
                "the observed rate (frame_time_s, psf_core_fraction)"
            )
        return make_header(self.kind, grid, config, prep)

    # ---------------------------------------------------------------------- fit
    def fit(
        self,
        spectrum_set: SpectrumSet,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        callback: Callback | None = None,
        *,
        streaming: bool = False,
        distributed: bool = False,
    ) -> SpectralAutoencoder:
        """Train on ``spectrum_set`` or a lazy view (read by blocks, also with ``streaming``;
        ``distributed``: a torchrun rank; :mod:`~xlatent.model.streaming`); returns self.

        ``checkpoint_dir``: write ``train_state.pt`` there after every epoch and the final
        model at the end. ``resume=True`` continues the run found there (same set, same
        options), or starts afresh when there is none. ``callback(epoch, record)`` is called
        after each epoch (record: train/val loss, lr, seconds). ``loss="poisson"`` refuses a
        set with ``effective_area_known`` or ``background_known`` False on any row
        (:func:`~xlatent.model.preprocess.check_loss_inputs`). Only the fitted attributes
        (``grid_``, ``net_``, ``history_``, ``calibration_``) change, and only on success.
        """
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
        if callback is not None and not callable(callback):
            raise ValueError("callback must be callable")
        cfg = self.train_cfg
        check_loss_inputs(spectrum_set, cfg.loss)
        validation_size(len(spectrum_set), cfg.val_fraction)
        if streaming or distributed or not isinstance(spectrum_set, SpectrumSet):
            from xlatent.model.streaming import fit_streaming

            args = (checkpoint_dir, resume, callback)
            return fit_streaming(self, spectrum_set, *args, distributed=distributed)
        dev = resolve_device(self.device)
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        grid = spectrum_set.grid
        arch = self._arch(grid.n_bins)
        prep = prepare(spectrum_set)

        checkpoint = state = None
        if checkpoint_dir is not None:
            header, digest = self._header(arch, grid), set_digest(spectrum_set)
            checkpoint = Checkpointing(Path(checkpoint_dir) / STATE_FILE, header, digest)
            if resume and checkpoint.path.exists():
                state = TrainState.load(checkpoint.path, header=header, grid=grid, digest=digest)
        data = training_tensors(prep, dev)

        torch.manual_seed(self.seed)
        net = SpectralTransformerAE(arch, grid.edges_kev).to(dev)
        trainer = Trainer(
            cfg, dev, max_time_s=self.max_time_s, progress=self.progress, callback=callback
        )
        history = trainer.run(net, data, state=state, checkpoint=checkpoint)
        self.grid_, self.net_, self.history_ = grid, net, history
        self.training_ids_ = spectrum_set.meta["spec_id"].astype(str).tolist()
        vars(self).pop("recipe_", None)  # a refitted model is no longer what a recipe made
        self.calibration_ = calibrate(self, spectrum_set, *split_indices(len(spectrum_set), cfg))
        if checkpoint_dir is not None:
            self.save(checkpoint_dir)
        return self

    # ---------------------------------------------------------------- inference
    def transform(self, spectrum_set: SpectrumSet, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Latent vectors, (n, latent_dim) float64."""
        return inference.transform(self, spectrum_set, batch_size)

    def reconstruct(self, spectrum_set: SpectrumSet, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Expected *source* counts per bin (n, m): amplitude times the decoded shape."""
        return inference.reconstruct(self, spectrum_set, batch_size)

    def encode_and_reconstruct(
        self, spectrum_set: SpectrumSet, batch_size: int = DEFAULT_BATCH
    ) -> tuple[np.ndarray, np.ndarray]:
        """(latents, reconstruction) from one encoder pass: bit for bit ``transform`` and
        ``reconstruct`` (same batches), at the cost of one of them."""
        return inference.encode_and_reconstruct(self, spectrum_set, batch_size)

    def decode(
        self, latents: np.ndarray, effective_area_cm2: np.ndarray | None = None
    ) -> np.ndarray:
        """Normalised counts shapes (n, m) for given latents (flat area when none is given;
        as the source would be seen without pile-up)."""
        grid, net = self._fitted("grid_", "net_")
        n_bins = grid.n_bins
        dev = next(net.parameters()).device
        lat = np.asarray(latents, dtype=np.float64)
        if lat.ndim != 2 or lat.shape[1] != self.latent_dim or not np.isfinite(lat).all():
            raise ValueError(
                f"latents must be finite, shape (n, {self.latent_dim}); got {lat.shape}"
            )
        z = torch.as_tensor(lat, dtype=torch.float32, device=dev)
        la = decode_log_area(effective_area_cm2, z.shape[0], n_bins)
        log_area = torch.as_tensor(la, dtype=torch.float32, device=dev)
        with torch.inference_mode():
            return torch.exp(net.log_shape(z, log_area)).double().cpu().numpy()

    # ------------------------------------------------------------------- disk
    def save(self, model_dir: str | Path, *, recipe: dict | None = None) -> Path:
        """Write ``model.json`` and ``weights.pt`` into ``model_dir`` (atomically each);
        ``recipe`` (else ``recipe_``, kept from :meth:`load`): the training recipe to record."""
        grid, net = self._fitted("grid_", "net_")
        d = Path(model_dir)
        d.mkdir(parents=True, exist_ok=True)
        header = self._header(self._arch(grid.n_bins), grid)
        header["training"] = {"history": self.history_}
        recipe = recipe if recipe is not None else getattr(self, "recipe_", None)
        if recipe is not None:
            header["recipe"] = check_recipe(recipe)
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        torch_save({"header": header, "model": state}, d / WEIGHTS_FILE)
        if getattr(self, "training_ids_", None) is not None:
            write_training_ids(d, self.training_ids_)
        if getattr(self, "calibration_", None) is not None:
            self.calibration_.save(d)
        write_header(d, header)
        return d

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto") -> SpectralAutoencoder:
        """Load a model saved by :meth:`save` (refuses other kinds and format versions).

        ``model.json`` and ``weights.pt`` are checked field by field before anything is built;
        ``weights.pt`` is read as data only (no pickled code). Anything wrong is a one-line
        :class:`CheckpointError` naming the file.
        """
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
        train = {**TRAIN_ADDED, **header["config"]["train"]}
        latent_dim = arch.pop("latent_dim")
        for k in ("n_bins", "n_channels", "n_global"):
            arch.pop(k)
        model = cls(latent_dim, device=device, progress=False, **arch, **train)
        grid = EnergyGrid(np.asarray(header["grid_edges_kev"]))
        arch_cfg = model._arch(header["config"]["arch"]["n_bins"])
        # Shapes from a network on the meta device: nothing is allocated before the check.
        with torch.device("meta"):
            reference = SpectralTransformerAE(arch_cfg, grid.edges_kev).state_dict()
        check_state_dict(blob["model"], reference, wpath)
        net = SpectralTransformerAE(arch_cfg, grid.edges_kev)
        try:
            net.load_state_dict(blob["model"])
        except (RuntimeError, KeyError, TypeError) as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"{wpath}: weights do not match {HEADER_FILE} ({msg})") from None
        net.to(resolve_device(model.device)).eval()
        model.grid_, model.net_ = grid, net
        model.history_ = header.get("training", {}).get("history", [])
        model.training_ids_ = read_training_ids(d)
        model.recipe_ = header.get("recipe")
        model.calibration_ = read_calibration(d, latent_dim)
        return model

    @classmethod
    def pretrained(cls, device: str = "auto") -> SpectralAutoencoder:
        """The model shipped with xlatent (``xlatent train --recipe default``; see
        ``docs/model_card.md``), loaded like any model directory."""
        return cls.load(pretrained_dir(), device=device)
