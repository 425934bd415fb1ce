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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from xlatent.model.options import Opt, check_options


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
    decoder: str = "mlp"  # "mlp" | "transformer"
    decoder_hidden: int = 256
    decoder_layers: int = 2
    dropout: float = 0.0
    area_aware: bool = True
    n_channels: int = 3
    n_global: int = 2

    @property
    def n_tokens(self) -> int:
        return math.ceil(self.n_bins / self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)


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
}


def check_arch(values: dict, *, required: bool = False, prefix: str = "") -> dict:
    """Check architecture options (types, ranges, and the ones that constrain each other).

    Returns them normalised; raises a one-line ValueError. ``required``: every field must be
    present (a stored config), else only the given ones are checked (user options).
    """
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


class SpectralTransformerAE(nn.Module):
    """Patch transformer encoder -> latent -> MLP (or transformer) decoder -> bin logits."""

    def __init__(self, cfg: ArchConfig, edges_kev: np.ndarray) -> None:
        super().__init__()
        self.cfg = cfg
        t = cfg.n_tokens
        pos = fourier_features(token_log_energy(edges_kev, cfg.patch_size), cfg.n_freqs)
        self.register_buffer("pos_feats", torch.tensor(pos, dtype=torch.float32))
        d = cfg.d_model
        self.patch_embed = nn.Linear(cfg.patch_size * cfg.n_channels, d)
        self.pos_embed = nn.Linear(pos.shape[1], d)
        self.global_embed = nn.Linear(cfg.n_global, d)
        self.global_token = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder = _encoder_stack(cfg, cfg.n_layers)
        self.enc_norm = nn.LayerNorm(d)
        self.to_latent = nn.Linear(d, cfg.latent_dim)
        if cfg.decoder == "mlp":
            layers: list[nn.Module] = []
            width = cfg.latent_dim
            for _ in range(cfg.decoder_layers):
                layers += [nn.Linear(width, cfg.decoder_hidden), nn.GELU()]
                width = cfg.decoder_hidden
            layers.append(nn.Linear(width, cfg.n_bins))
            self.decoder = nn.Sequential(*layers)
        elif cfg.decoder == "transformer":
            self.queries = nn.Parameter(torch.randn(1, t, d) * 0.02)
            self.dec_pos = nn.Linear(pos.shape[1], d)
            self.dec_cond = nn.Linear(cfg.latent_dim, d)
            self.dec_stack = _encoder_stack(cfg, cfg.decoder_layers)
            self.dec_norm = nn.LayerNorm(d)
            self.dec_out = nn.Linear(d, cfg.patch_size)
        else:
            raise ValueError(f"decoder must be 'mlp' or 'transformer', not {cfg.decoder!r}")

    def encode(self, feats: torch.Tensor, glob: torch.Tensor) -> torch.Tensor:
        """feats (B, m, C) per-bin features, glob (B, G) -> latents (B, latent_dim)."""
        b, m, c = feats.shape
        pad = self.cfg.n_tokens * self.cfg.patch_size - m
        if pad:
            feats = nn.functional.pad(feats, (0, 0, 0, pad))
        tokens = feats.reshape(b, self.cfg.n_tokens, self.cfg.patch_size * c)
        x = self.patch_embed(tokens) + self.pos_embed(self.pos_feats)[None]
        g = self.global_token + self.global_embed(glob)[:, None, :]
        x = self.encoder(torch.cat([g, x], dim=1))
        return self.to_latent(self.enc_norm(x).mean(dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> log photon-shape logits (B, m), unnormalised."""
        if self.cfg.decoder == "mlp":
            return self.decoder(z)
        q = self.queries + self.dec_pos(self.pos_feats)[None] + self.dec_cond(z)[:, None, :]
        h = self.dec_out(self.dec_norm(self.dec_stack(q)))
        return h.reshape(z.shape[0], -1)[:, : self.cfg.n_bins]

    def log_shape(self, z: torch.Tensor, log_area: torch.Tensor) -> torch.Tensor:
        """log p: log of the normalised counts shape (B, m)."""
        logits = self.decode(z).float()
        if self.cfg.area_aware:
            logits = logits + log_area
        return torch.log_softmax(logits, dim=-1)


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
