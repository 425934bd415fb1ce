"""The transformer autoencoder network (torch modules only; no data handling).

Encoder: the m grid bins are cut into patches of ``patch_size`` bins (128 bins / 4 = 32 tokens:
self-attention cost grows with the token count squared, and 4 adjacent log-spaced bins span
only ~9% in energy, finer than the detector resolution, so little is lost). Each token embeds
its patch's per-bin features and gets an energy-aware positional encoding: Fourier features
of the normalised log energy of the patch centre, so the model knows where each token sits in
keV on any grid. A global token carries the signal-to-noise features. A pre-norm transformer
encoder runs over [global, patches]; the latent is a linear map of the mean-pooled output.

Decoder: by default an MLP from the latent to one logit per bin. The decoder has no sequence
to attend over, only a global 8-vector to expand into a smooth function of energy, which an
MLP does at a fraction of the cost; ``decoder="transformer"`` gives learned per-token queries
(with the same positional encoding) conditioned on the latent, for comparison. The logits are
a log *photon* shape: adding log(A / mean A) and a softmax over bins gives the counts shape
``p``; the expected source counts are ``N * p`` (see :mod:`xlatent.model.preprocess`).

Composition (as in spender's ``SpectrumAutoencoder``): :class:`SpectrumEncoder`, a decoder
from :data:`DECODERS` (name -> class) and :class:`InstrumentResponse` (the effective area
folded back in, then the softmax) are separate modules that :class:`SpectralTransformerAE`
composes. Its ``state_dict`` keeps the tensor names of checkpoint format 1, written when it was
one flat module (:data:`STORED_NAMES`), so every saved model and training state stays readable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn

from xlatent.model import fastpath

# ArchConfig, ARCH_OPTIONS and check_arch live with the other options; imported from here too.
from xlatent.model.options import ARCH_OPTIONS, ArchConfig, check_arch
from xlatent.model.pileup import MIN_LAM, Pileup

__all__ = [
    "ARCH_OPTIONS",
    "DECODERS",
    "ArchConfig",
    "InstrumentResponse",
    "MLPDecoder",
    "SpectralTransformerAE",
    "SpectrumEncoder",
    "TransformerDecoder",
    "autocast",
    "check_arch",
    "resolve_device",
    "torch_poisson_deviance",
]


def token_log_energy(edges_kev: np.ndarray, patch_size: int) -> np.ndarray:
    """Normalised log energy (0..1 over the grid) of each patch's geometric centre."""
    edges = np.asarray(edges_kev, dtype=np.float64)
    m = edges.size - 1
    starts = np.arange(0, m, patch_size)
    ends = np.minimum(starts + patch_size, m)
    log_c = 0.5 * (np.log(edges[starts]) + np.log(edges[ends]))
    lo, hi = np.log(edges[0]), np.log(edges[-1])
    return (log_c - lo) / (hi - lo)


def fourier_features(u: np.ndarray, n_freqs: int) -> np.ndarray:
    """[u, sin(pi k u), cos(pi k u)] for k = 1..n_freqs; u in [0, 1]."""
    k = np.arange(1, n_freqs + 1)
    ang = np.pi * u[:, None] * k[None, :]
    return np.concatenate([u[:, None], np.sin(ang), np.cos(ang)], axis=1)


def _encoder_stack(cfg: ArchConfig, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.d_model,
        cfg.n_heads,
        cfg.ff_dim,
        dropout=cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class SpectrumEncoder(nn.Module):
    """Per-bin features (B, m, C) and global features (B, G) -> latents (B, latent_dim)."""

    def __init__(self, cfg: ArchConfig, n_pos: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_tokens, self.patch_size = cfg.n_tokens, cfg.patch_size
        self.photon_channel = cfg.photon_channel
        # Created in this order so that a seed gives the weights it gave before the split.
        self.patch_embed = nn.Linear(cfg.patch_size * (cfg.n_channels + cfg.photon_channel), d)
        self.pos_embed = nn.Linear(n_pos, d)
        self.global_embed = nn.Linear(cfg.n_global, d)
        self.global_token = nn.Parameter(torch.zeros(1, 1, d))
        self.stack = _encoder_stack(cfg, cfg.n_layers)
        self.norm = nn.LayerNorm(d)
        self.to_latent = nn.Linear(d, cfg.latent_dim)

    def forward(
        self, feats: torch.Tensor, glob: torch.Tensor, pos_feats: torch.Tensor
    ) -> torch.Tensor:
        if self.photon_channel:
            feats = with_photon_channel(feats)
        if fastpath.supported(self, feats.device):  # inference: the same numbers
            return fastpath.encode(self, feats, glob, pos_feats)
        b, m, c = feats.shape
        pad = self.n_tokens * self.patch_size - m
        if pad:
            feats = nn.functional.pad(feats, (0, 0, 0, pad))
        tokens = feats.reshape(b, self.n_tokens, self.patch_size * c)
        x = self.patch_embed(tokens) + self.pos_embed(pos_feats)[None]
        g = self.global_token + self.global_embed(glob)[:, None, :]
        x = self.stack(torch.cat([g, x], dim=1))
        return self.to_latent(self.norm(x).mean(dim=1))


#: Relative effective area (A over its geometric mean) below which the photon channel stops
#: dividing: at most 10x.
PHOTON_AREA_FLOOR = 0.1


def with_photon_channel(feats: torch.Tensor) -> torch.Tensor:
    """The encoder's per-bin features (B, m, 3) with a fourth channel: the net shape divided
    by the relative effective area (floored at :data:`PHOTON_AREA_FLOOR`), renormalised and
    transformed as the first channel, ``log1p(m y)``: a photon-space view, so that the
    encoder need not learn to unfold the area from the counts and the area channels."""
    m = feats.shape[1]
    shape = torch.expm1(feats[..., 0]) * torch.exp(
        -feats[..., 2].clamp_min(math.log(PHOTON_AREA_FLOOR))
    )
    total = shape.sum(1, keepdim=True)
    shape = torch.where(total > 0, shape / total.clamp_min(1e-30), 0.0)
    return torch.cat([feats, torch.log1p(m * shape)[..., None]], dim=-1)


class MLPDecoder(nn.Sequential):
    """Latents (B, latent_dim) -> log photon-shape logits (B, m): a GELU MLP."""

    def __init__(self, cfg: ArchConfig, n_pos: int) -> None:
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for _ in range(cfg.decoder_layers):
            layers += [nn.Linear(width, cfg.decoder_hidden), nn.GELU()]
            width = cfg.decoder_hidden
        layers.append(nn.Linear(width, cfg.n_bins))
        super().__init__(*layers)

    def forward(self, z: torch.Tensor, pos_feats: torch.Tensor) -> torch.Tensor:  # noqa: ARG002
        return super().forward(z)


class TransformerDecoder(nn.Module):
    """Latents -> logits through learned per-token queries conditioned on the latent."""

    def __init__(self, cfg: ArchConfig, n_pos: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_bins = cfg.n_bins
        self.queries = nn.Parameter(torch.randn(1, cfg.n_tokens, d) * 0.02)
        self.pos_embed = nn.Linear(n_pos, d)
        self.cond = nn.Linear(cfg.latent_dim, d)
        self.stack = _encoder_stack(cfg, cfg.decoder_layers)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, cfg.patch_size)

    def forward(self, z: torch.Tensor, pos_feats: torch.Tensor) -> torch.Tensor:
        q = self.queries + self.pos_embed(pos_feats)[None] + self.cond(z)[:, None, :]
        h = self.out(self.norm(self.stack(q)))
        return h.reshape(z.shape[0], -1)[:, : self.n_bins]


#: The decoders by name (``ArchConfig.decoder``); each is built as ``cls(cfg, n_pos)`` and
#: called as ``decoder(z, pos_feats)``.
DECODERS: dict[str, type[nn.Module]] = {"mlp": MLPDecoder, "transformer": TransformerDecoder}


#: ACIS-like resolution that starts the learned redistribution: FWHM(E)^2 = a^2 + b E (keV),
#: ~95 eV at 1.5 keV and ~150 eV at 6 keV, as the front-illuminated chips on axis (Chandra
#: Proposers' Observatory Guide, ch. 6); training then fits the sky's own mix of chips.
FWHM_A_KEV, FWHM_B_KEV = 0.067, 0.003


def redistribution_init(edges_kev: np.ndarray, half: int) -> np.ndarray:
    """Log weights (m, 2 half + 1): where a photon of bin j lands, at offsets -half..half
    bins, for a Gaussian of FWHM ``FWHM(E_j)`` on the grid's bin widths."""
    edges = np.asarray(edges_kev, dtype=np.float64)
    centre = np.sqrt(edges[:-1] * edges[1:])
    sigma_bins = np.sqrt(FWHM_A_KEV**2 + FWHM_B_KEV * centre) / 2.3548 / np.diff(edges)
    off = np.arange(-half, half + 1, dtype=np.float64)
    return -0.5 * (off[None, :] / np.maximum(sigma_bins[:, None], 0.05)) ** 2


class InstrumentResponse(nn.Module):
    """Log photon-shape logits (B, m) -> log counts shape log p (B, m).

    Adds the observation's log relative effective area (``area_aware``) and normalises over
    bins: the effective area is multiplied back in, never learned. With ``redistribution`` =
    k > 0 the area-weighted shape is then spread over +-k bins by one learned redistribution
    matrix shared by all spectra (started at an ACIS-like Gaussian resolution,
    :func:`redistribution_init`): the detector smooths the counts *after* the area's sharp
    edges (Si K at 1.84 keV, the contaminant's O K and C K), which no photon shape times the
    area can reproduce for every area at once.
    """

    def __init__(self, area_aware: bool, edges_kev: np.ndarray | None = None,
                 redistribution: int = 0, pileup_orders: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.area_aware, self.half = area_aware, redistribution
        # After the redistribution, as on the detector: charges of piled photons add up.
        self.pileup = Pileup(np.asarray(edges_kev), pileup_orders) if pileup_orders > 1 else None
        if redistribution:
            init = redistribution_init(np.asarray(edges_kev), redistribution)
            m, w = init.shape
            self.redist_logits = nn.Parameter(torch.tensor(init, dtype=torch.float32))
            rows = np.repeat(np.arange(m), w)
            cols = (np.arange(m)[:, None] + np.arange(w)[None, :]).ravel()  # j + offset + half
            self.register_buffer("_rows", torch.tensor(rows), persistent=False)
            self.register_buffer("_cols", torch.tensor(cols), persistent=False)

    def matrix(self) -> torch.Tensor:
        """The redistribution (m, m): row j is where bin j's photons land (sums to <= 1:
        photons spread past the grid's ends are lost, as off a detector's band)."""
        w = torch.softmax(self.redist_logits.float(), dim=1)
        m = w.shape[0]
        padded = w.new_zeros(m, m + 2 * self.half)
        padded[self._rows, self._cols] = w.reshape(-1)
        return padded[:, self.half : self.half + m]

    def forward(self, logits: torch.Tensor, log_area: torch.Tensor,
                pileup: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """``pileup`` (B, 2): incident core counts per frame and PSF core share per spectrum
        (:func:`xlatent.model.pileup.pileup_inputs`); None or a model without pile-up: none."""
        logits = logits.float()
        if self.area_aware:
            logits = logits + log_area
        if not self.half:
            log_p = torch.log_softmax(logits, dim=-1)
        else:
            with torch.autocast(logits.device.type, enabled=False):  # fp32 whatever autocast
                y = torch.softmax(logits, dim=-1) @ self.matrix()
                log_p = _log_normalised(y)
        if self.pileup is None or pileup is None:
            return log_p
        piles = pileup[:, :1] >= MIN_LAM  # most spectra: not piled
        if not bool(piles.any()):  # the rate's scale stays in the graph (DDP needs every grad)
            return log_p + 0.0 * self.pileup.log_lam_scale
        # Every row piled, the unpiled ones then left as they were: a subset of rows would
        # make the matmuls' shapes, hence their rounding, depend on the batch's other spectra.
        with torch.autocast(logits.device.type, enabled=False):
            piled = _log_normalised(self.pileup(torch.exp(log_p), pileup.float()))
            return torch.where(piles, piled, log_p)


def _log_normalised(y: torch.Tensor) -> torch.Tensor:
    """log(y / sum y) over the last axis, y floored at 1e-30."""
    y = y.clamp_min(1e-30)
    return torch.log(y) - torch.log(y.sum(dim=-1, keepdim=True))


#: Module path prefix -> tensor name prefix in checkpoints (format 1, the flat network).
STORED_NAMES: dict[str, str] = {
    "encoder.global_token": "global_token",
    "encoder.patch_embed.": "patch_embed.",
    "encoder.pos_embed.": "pos_embed.",
    "encoder.global_embed.": "global_embed.",
    "encoder.stack.": "encoder.",
    "encoder.norm.": "enc_norm.",
    "encoder.to_latent.": "to_latent.",
    "decoder.queries": "queries",
    "decoder.pos_embed.": "dec_pos.",
    "decoder.cond.": "dec_cond.",
    "decoder.stack.": "dec_stack.",
    "decoder.norm.": "dec_norm.",
    "decoder.out.": "dec_out.",
}
_MODULE_NAMES = {v: k for k, v in STORED_NAMES.items()}


def _rename(name: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if name == old or (old.endswith(".") and name.startswith(old)):
            return new + name[len(old) :]
    return name


class SpectralTransformerAE(nn.Module):
    """Encoder -> latent -> decoder (by name) -> instrument response -> log counts shape."""

    def __init__(self, cfg: ArchConfig, edges_kev: np.ndarray) -> None:
        super().__init__()
        if cfg.decoder not in DECODERS:
            raise ValueError(f"decoder must be 'mlp' or 'transformer', not {cfg.decoder!r}")
        self.cfg = cfg
        pos = fourier_features(token_log_energy(edges_kev, cfg.patch_size), cfg.n_freqs)
        self.register_buffer("pos_feats", torch.tensor(pos, dtype=torch.float32))
        self.encoder = SpectrumEncoder(cfg, pos.shape[1])
        self.decoder = DECODERS[cfg.decoder](cfg, pos.shape[1])
        self.instrument = InstrumentResponse(
            cfg.area_aware, edges_kev, cfg.redistribution, cfg.pileup_orders
        )
        self.register_load_state_dict_pre_hook(_from_stored)
        self._register_state_dict_hook(_to_stored)

    def encode(self, feats: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """feats (B, m, C) per-bin features, glob (B, >= G) -> latents (B, latent_dim); the
        first ``n_global`` global features are read (the pile-up rate's only when it piles)."""
        return self.encoder(feats, glob[:, : self.cfg.n_global], self.pos_feats)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> log photon-shape logits (B, m), unnormalised."""
        return self.decoder(z, self.pos_feats)

    def log_shape(self, z: torch.Tensor, log_area: torch.Tensor,
                  pileup: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """log p: log of the normalised counts shape (B, m), piled up as ``pileup`` (B, 2)
        says when the model has pile-up orders."""
        return self.instrument(self.decode(z), log_area, pileup)

    def ordered_parameters(self) -> list[nn.Parameter]:
        """The parameters in checkpoint order (the order of format 1's optimizer state)."""
        by_name = {_rename(k, STORED_NAMES): p for k, p in self.named_parameters()}
        return [by_name[k] for k in self.state_dict(keep_vars=True) if k in by_name]


def _to_stored(module: nn.Module, sd: dict, prefix: str, local_metadata: Any) -> None:
    """state_dict hook: tensor names (and order) of format 1, the flat network."""
    items = [
        (prefix + _rename(k[len(prefix) :], STORED_NAMES) if k.startswith(prefix) else k, v)
        for k, v in sd.items()
    ]
    params = {prefix + _rename(k, STORED_NAMES) for k, _ in module.named_parameters()}
    # Format 1 listed the flat module's own tensors first, parameters before buffers.
    top = {k for k, _ in items if k.startswith(prefix) and "." not in k[len(prefix) :]}
    items.sort(key=lambda kv: 0 if kv[0] in params and kv[0] in top else 1 if kv[0] in top else 2)
    sd.clear()
    sd.update(items)


def _from_stored(module: nn.Module, sd: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: format-1 tensor names -> module paths."""
    items = list(sd.items())
    sd.clear()
    for k, v in items:
        sd[prefix + _rename(k[len(prefix) :], _MODULE_NAMES) if k.startswith(prefix) else k] = v


def torch_poisson_deviance(
    log_shape: torch.Tensor,
    log_amp: torch.Tensor,
    counts: torch.Tensor,
    log_bkg: torch.Tensor,
    clogc: torch.Tensor,
) -> torch.Tensor:
    """Per-spectrum Poisson deviance of counts given mu = N p + B (float32, stable in logs).

    ``log_bkg`` is log B (-inf where B = 0) and ``clogc`` is xlogy(c, c), precomputed.
    """
    log_mu = torch.logaddexp(log_amp[:, None] + log_shape, log_bkg)
    mu = torch.exp(log_mu)
    return 2.0 * torch.sum(mu - counts + clogc - counts * log_mu, dim=-1)


def resolve_device(device: str) -> torch.device:
    """The torch device for a checked ``device`` option (ValueError if it is not present)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA device is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available")
    return dev


def autocast(dev: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA only: on CPU it is slower for these small matmuls."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
