"""Inference-only forward of the encoder: the same numbers as the modules, faster on a CPU.

:func:`encode` gives, bit for bit, what ``SpectrumEncoder.forward`` gives under
``torch.inference_mode`` in eval mode (where each ``nn.TransformerEncoderLayer`` takes
PyTorch's native fast path, ``torch._transformer_encoder_layer_fwd``). On the shared 2-core
CPU (load 7-15) interleaved A/Bs of the pretrained model gave 0.96x-1.22x: a modest gain,
within the noise there. Where the time went (``torch.profiler``, one thread, 512 spectra a
pass): ~28% in the native path's ``_transform_bias_rescale_qkv``, and the rest mostly in
matmuls whose operands (512 x 33 tokens x 192 floats, 13 MB) overflow a core's 1 MB L2. So:

- each layer is written out with the ops the native path runs (layer norm, the in-projection
  with its bias, q scaled by 1/sqrt(head_dim), q k^T, softmax, times v, out-projection, the
  residuals, the GELU feed-forward): same kernels, same shapes, so the same roundings;
- the batch goes through in micro-batches of :data:`MICRO_BATCH` spectra (a layer's
  activations then stay in L2). Every op works row by row (a spectrum's latent never depends
  on the other spectra in its batch), so the micro-batching leaves the numbers as they are.

``SpectrumEncoder.forward`` takes this path under ``torch.inference_mode`` on a CPU (every
inference function runs there; training and its validation never do) when :func:`supported`;
else the modules (an odd head count, for one, makes PyTorch leave its fast path, and then the
numbers are another path's). ``tests/model/test_fastpath.py`` checks the equality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ENABLED", "MICRO_BATCH", "encode", "supported"]

#: False: every encoder runs through its modules (the reference, for tests and benchmarks).
ENABLED = True

#: Spectra per micro-batch: 64 x 33 tokens keeps a layer's activations (~1.6 MB for the
#: q, k, v of the default d_model 64) near the L2 cache (fastest of 32..512 here).
MICRO_BATCH = 64


def supported(encoder: nn.Module, device: torch.device) -> bool:
    """True where every layer of ``encoder.stack`` would take PyTorch's native CPU fast path
    (the conditions of ``nn.TransformerEncoderLayer.forward``: eval mode, even head count,
    batch-first attention with biases, GELU, equal norm eps, no autocast, no hooks) and is
    pre-norm, under ``torch.inference_mode`` on a CPU: there :func:`encode` gives its numbers.
    """
    if (
        not ENABLED
        or device.type != "cpu"
        or encoder.training
        or not torch.is_inference_mode_enabled()
        or not torch.backends.mha.get_fastpath_enabled()
        or torch.is_autocast_enabled()
    ):
        return False
    for layer in encoder.stack.layers:
        attn = layer.self_attn
        if not (
            isinstance(layer, nn.TransformerEncoderLayer)
            and layer.norm_first
            and layer.activation_relu_or_gelu == 2
            and layer.norm1.eps == layer.norm2.eps
            and attn.num_heads % 2 == 0
            and attn.batch_first
            and attn._qkv_same_embed_dim
            and attn.in_proj_bias is not None
            and attn.out_proj.bias is not None
            and not any(m._forward_hooks or m._forward_pre_hooks for m in layer.modules())
        ):
            return False
    return True


def _layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """One pre-norm encoder layer: the native fast path's operations, in its order and with
    its operand layouts (``_native_multi_head_attention``: the in-projection without bias,
    then bias and scale; q, k, v contiguous per head; ``bmm`` with k transposed), since
    another layout can take another BLAS kernel and round differently."""
    b, t, d = x.shape
    attn = layer.self_attn
    heads = attn.num_heads
    hd = d // heads
    h = F.layer_norm(x, (d,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    qkv = torch.mm(h.view(b * t, d), attn.in_proj_weight.t()) + attn.in_proj_bias
    qkv = qkv.view(b, t, 3, heads, hd).permute(2, 0, 3, 1, 4).contiguous()  # (3, b, H, t, hd)
    q = (qkv[0] * (1.0 / math.sqrt(hd))).view(b * heads, t, hd)
    k, v = qkv[1].view(b * heads, t, hd), qkv[2].view(b * heads, t, hd)
    w = torch.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
    a = torch.bmm(w, v).view(b, heads, t, hd).transpose(1, 2).reshape(b * t, d)
    x = F.linear(a, attn.out_proj.weight, attn.out_proj.bias).view(b, t, d) + x
    h = F.layer_norm(x, (d,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    h = F.gelu(F.linear(h.view(b * t, d), layer.linear1.weight, layer.linear1.bias))
    return F.linear(h, layer.linear2.weight, layer.linear2.bias).view(b, t, d) + x


def _encode_block(
    enc: nn.Module, feats: torch.Tensor, glob: torch.Tensor, pos: torch.Tensor
) -> torch.Tensor:
    b, m, c = feats.shape
    pad = enc.n_tokens * enc.patch_size - m
    if pad:
        feats = F.pad(feats, (0, 0, 0, pad))
    tokens = feats.reshape(b, enc.n_tokens, enc.patch_size * c)
    x = enc.patch_embed(tokens) + pos
    g = enc.global_token + enc.global_embed(glob)[:, None, :]
    x = torch.cat([g, x], dim=1)
    for layer in enc.stack.layers:
        x = _layer(layer, x)
    return enc.to_latent(enc.norm(x).mean(dim=1))


def encode(
    enc: nn.Module,
    feats: torch.Tensor,
    glob: torch.Tensor,
    pos_feats: torch.Tensor,
    micro_batch: int = MICRO_BATCH,
) -> torch.Tensor:
    """What ``enc(feats, glob, pos_feats)`` (a :class:`~xlatent.model.network.SpectrumEncoder`
    for which :func:`supported` holds) gives through its modules, bit for bit.

    With ``torch.get_num_threads()`` = k > 1, the micro-batches are shared among k threads
    that each run torch on one thread (:func:`_in_threads`)."""
    pos = enc.pos_embed(pos_feats)[None]  # the same for every spectrum: once per call
    starts = range(0, feats.shape[0], micro_batch)
    if len(starts) <= 1:
        return _encode_block(enc, feats, glob, pos)

    def block(k: int) -> torch.Tensor:
        return _encode_block(enc, feats[k : k + micro_batch], glob[k : k + micro_batch], pos)

    workers = min(torch.get_num_threads(), len(starts))
    parts = [block(k) for k in starts] if workers == 1 else _in_threads(block, starts, workers)
    return torch.cat(parts)


def _in_threads(
    fn: Callable[[int], torch.Tensor], items: Sequence[int], workers: int
) -> list[torch.Tensor]:
    """``[fn(i) for i in items]`` on ``workers`` threads, each with one torch thread.

    Why not torch's own threads: each op of a 64-spectrum micro-batch is 50-500 us, and
    torch's OpenMP threads meet at a barrier after every op; on this shared 2-core machine
    (load ~10) a descheduled partner stalls every barrier: 2 OpenMP threads encoded ~400
    spectra/s where these 2 threads (or 1 thread) gave ~4,500. Each micro-batch is computed
    as on one thread, so the numbers are the same as with any thread count. A pool per call
    (two threads: ~0.1 ms) survives a fork, which a kept pool would not."""
    n_threads = torch.get_num_threads()

    def run(i: int) -> torch.Tensor:
        with torch.inference_mode():
            return fn(i)

    try:
        init = (torch.set_num_threads, (1,))
        with ThreadPoolExecutor(workers, initializer=init[0], initargs=init[1]) as pool:
            return list(pool.map(run, items))
    finally:
        # A worker's set_num_threads(1) is also torch's default for threads made later.
        torch.set_num_threads(n_threads)
