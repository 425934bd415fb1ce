"""Training from a set read block by block, so that memory stays flat as the set grows (issue 17).

:func:`fit_streaming` is :meth:`SpectralAutoencoder.fit` for a *row source*: anything with
``len(src)``, ``src.grid``, ``src.meta`` and ``src[a:b] -> SpectrumSet`` (a lazy
``SpectrumSet.open`` view, a :class:`Rows` subset of one, or an in-memory SpectrumSet sent
this way). It also runs every distributed fit (:mod:`xlatent.model.distributed`). The meta
is read by column where the source can (``meta_columns``, as a view does): ``spec_id`` for
the digest and the training ids, nothing else whole, so no rank holds the whole table.

- Order (:class:`StreamBatches`): each epoch a seeded random order of the blocks of
  :data:`BLOCK_ROWS` rows, and within each group of :data:`BUFFER_BLOCKS` blocks a random
  order of their training rows; the batches are consecutive slices of that order, as in
  memory (same split, same steps per epoch, same schedule), so only the shuffle differs.
- Reading: a few batches at a time, each block they touch read once, contiguously; the rows
  are prepared (``prepare`` is per spectrum) and dropped after their batches. In a
  distributed run each rank reads and prepares only its share of each batch.
- Validation rows are read from the source once and kept prepared (float32, about 5 kB each)
  up to :data:`VAL_CACHE_ROWS` per rank, else read again each epoch; the set digest of the
  checkpoints is computed block by block (the same value as in memory) and the calibration
  reads the validation rows and its sample of training rows only (the same result as in
  memory for the same weights), on rank 0, which sends it to the others.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.core.spectrumset_view import meta_names_of, meta_of
from xlatent.model.calibration import MIN_CALIBRATION_SPECTRA, Calibration, fit_calibration
from xlatent.model.distributed import Dist, init_distributed
from xlatent.model.network import SpectralTransformerAE, resolve_device
from xlatent.model.preprocess import prepare
from xlatent.model.training import (
    STATE_FILE,
    Batch,
    Callback,
    Checkpointing,
    Trainer,
    TrainState,
    split_indices,
    training_tensors,
)

__all__ = ["BLOCK_ROWS", "Rows", "RowSource", "StreamBatches", "fit_streaming", "read_rows"]

#: Rows per block: the unit of reading and of the block shuffle.
BLOCK_ROWS = 2048
#: Blocks whose training rows are shuffled together (the shuffle buffer).
BUFFER_BLOCKS = 4
#: Validation rows per rank kept prepared in memory (about 5 kB each); more are re-read.
VAL_CACHE_ROWS = 32768


class RowSource(Protocol):
    """What training reads: a lazy view, a :class:`Rows` subset, or a SpectrumSet."""

    grid: EnergyGrid
    meta: pd.DataFrame

    def __len__(self) -> int: ...
    def __getitem__(self, idx: slice) -> SpectrumSet: ...


def read_rows(src: RowSource, rows: np.ndarray, block: int | None = None) -> SpectrumSet:
    """Rows ``rows`` (sorted, unique) of ``src`` as one in-memory set: one contiguous read
    (``src[a:b]``) per block they fall in, then the rows picked from it."""
    rows, block = np.asarray(rows, dtype=np.int64), block or BLOCK_ROWS
    if rows.size == 0:
        raise ValueError("read_rows: no rows asked")
    cut = np.flatnonzero(np.diff(rows // block)) + 1
    parts = []
    for g in np.split(rows, cut):
        lo, hi = int(g[0]), int(g[-1]) + 1
        part = src[lo:hi]
        parts.append(part if len(g) == hi - lo else part[g - lo])
    return parts[0] if len(parts) == 1 else SpectrumSet.concat(parts)


class Rows:
    """Rows ``rows`` (sorted) of a source, itself a source: read only when sliced (the
    'train' rows of a set, the training split for the calibration)."""

    def __init__(self, src: RowSource, rows: np.ndarray) -> None:
        self.src, self.rows = src, np.asarray(rows, dtype=np.int64)
        self.grid = src.grid

    @property
    def meta(self) -> pd.DataFrame:
        return meta_of(self.src, None, self.rows)

    @property
    def meta_names(self) -> list[str]:
        return meta_names_of(self.src)

    def meta_columns(self, cols: list[str] | None = None, rows: Any = None) -> pd.DataFrame:
        """Columns ``cols`` of these rows (or of ``rows`` of them), read from the source."""
        return meta_of(self.src, cols, self.rows if rows is None else self.rows[rows])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: slice | np.ndarray) -> SpectrumSet:
        return read_rows(self.src, self.rows[idx])


def streamed_digest(src: RowSource) -> str:
    """:func:`~xlatent.model.train_state.set_digest` of ``src``, read block by block."""
    block = BLOCK_ROWS
    h = hashlib.sha256("\n".join(meta_of(src, ["spec_id"])["spec_id"]).encode())
    for a in range(0, len(src), block):
        h.update(np.ascontiguousarray(src[a : a + block].counts, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


class StreamBatches:
    """Batches of a row source in block-shuffled order, this rank's share of each (module doc)."""

    def __init__(
        self, src: RowSource, device: torch.device, dist: Dist,
        block: int | None = None, buffer: int | None = None,
    ) -> None:  # fmt: skip
        self.src, self.device, self.dist = src, device, dist
        self.n, self.block, self.buffer = len(src), block or BLOCK_ROWS, buffer or BUFFER_BLOCKS
        self._val: tuple[np.ndarray, dict[str, torch.Tensor]] | None = None

    def tensors(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        return training_tensors(prepare(read_rows(self.src, rows, self.block)), self.device)

    def epoch_order(self, train: np.ndarray, gen: torch.Generator) -> np.ndarray:
        is_train = np.zeros(self.n, dtype=bool)
        is_train[train] = True
        blocks = torch.randperm(math.ceil(self.n / self.block), generator=gen).numpy()
        parts = []
        for g in range(0, len(blocks), self.buffer):
            rows = np.concatenate(
                [np.flatnonzero(is_train[b * self.block : (b + 1) * self.block]) + b * self.block
                 for b in blocks[g : g + self.buffer]]
            )  # fmt: skip
            parts.append(rows[torch.randperm(len(rows), generator=gen).numpy()])
        return np.concatenate(parts)

    def batches(self, order: np.ndarray, steps: int, size: int) -> Iterator[Batch]:
        per_read = max(1, self.block * self.buffer // size)
        for s0 in range(0, steps, per_read):
            shares = []
            for s in range(s0, min(steps, s0 + per_read)):
                batch = order[s * size : (s + 1) * size]
                lo, hi = self.dist.shard(len(batch))
                mine = batch[lo:hi] if hi > lo else batch[:1]  # weight 0 (see Batch)
                shares.append((mine, len(batch), hi - lo))
            rows = np.unique(np.concatenate([m for m, _, _ in shares]))
            data = self.tensors(rows)
            for mine, n_batch, n_mine in shares:
                pos = torch.as_tensor(np.searchsorted(rows, mine), device=self.device)
                yield {k: v[pos] for k, v in data.items()}, n_batch, n_mine

    def eval_batches(self, rows: np.ndarray, chunk: int = 4096) -> Iterator[dict]:
        lo, hi = self.dist.shard(len(rows))
        mine = np.asarray(rows[lo:hi])
        if self._val is not None and np.array_equal(self._val[0], mine):
            data = self._val[1]
            for k in range(0, len(mine), chunk):
                yield {key: v[k : k + chunk] for key, v in data.items()}
            return
        if 0 < len(mine) <= VAL_CACHE_ROWS:
            # Read and prepared ``chunk`` rows at a time into the cache (prepare is per
            # spectrum: the same tensors): all at once, the float64 set and the preparation's
            # temporaries (~30 kB a row) multiplied the rank's memory at the first validation.
            data: dict[str, torch.Tensor] = {}
            for k in range(0, len(mine), chunk):
                for key, v in self.tensors(mine[k : k + chunk]).items():
                    if key not in data:
                        data[key] = v.new_empty((len(mine), *v.shape[1:]))
                    data[key][k : k + len(v)] = v
            self._val = (mine, data)
            yield from self.eval_batches(rows, chunk)
            return
        for k in range(0, len(mine), chunk):
            yield self.tensors(mine[k : k + chunk])


def stream_calibrate(
    model: Any, src: RowSource, val: np.ndarray, train: np.ndarray
) -> Calibration | None:
    """:func:`~xlatent.model.calibration.calibrate` reading only the rows it uses."""
    if len(val) < MIN_CALIBRATION_SPECTRA:
        return None
    return fit_calibration(model, Rows(src, train), read_rows(src, val), seed=model.seed)


def fit_streaming(
    model: Any, src: RowSource, checkpoint_dir: str | Path | None = None, resume: bool = False,
    callback: Callback | None = None, *, distributed: bool = False,
) -> Any:  # fmt: skip
    """Fit ``model`` (a SpectralAutoencoder) on a row source, block by block; with
    ``distributed`` as one rank of a torchrun job. Same options, checks, checkpoints and
    fitted attributes as ``fit``, which checks the arguments before calling this; in a
    distributed run only rank 0 writes."""
    cfg = model.train_cfg
    dist = init_distributed(model.device) if distributed else None
    try:
        dev = dist.device if dist else resolve_device(model.device)
        dist = dist or Dist(device=dev)
        if model.num_threads:
            torch.set_num_threads(model.num_threads)
        grid = src.grid
        arch = model._arch(grid.n_bins)
        checkpoint = state = None
        if checkpoint_dir is not None:
            header = model._header(arch, grid)
            digest = dist.broadcast(streamed_digest(src) if dist.main else None)
            checkpoint = Checkpointing(Path(checkpoint_dir) / STATE_FILE, header, digest)
            if resume and checkpoint.path.exists():
                state = TrainState.load(checkpoint.path, header=header, grid=grid, digest=digest)
        torch.manual_seed(model.seed)
        net = SpectralTransformerAE(arch, grid.edges_kev).to(dev)
        trainer = Trainer(
            cfg, dev, max_time_s=model.max_time_s, progress=model.progress and dist.main,
            callback=callback,
        )  # fmt: skip
        source = StreamBatches(src, dev, dist)
        history = trainer.run(net, source, state=state, checkpoint=checkpoint, dist=dist)
        model.grid_, model.net_, model.history_ = grid, net, history
        model.training_ids_ = meta_of(src, ["spec_id"])["spec_id"].astype(str).tolist()
        vars(model).pop("recipe_", None)  # a refitted model is no longer what a recipe made
        # Rank 0 calibrates and sends the result (the same weights give the same result on
        # any rank: it reads the whole validation share, and a calibration on every rank
        # multiplied that memory by the ranks); each returns the same fitted model, rank 0
        # alone writes it.
        cal = stream_calibrate(model, src, *split_indices(len(src), cfg)) if dist.main else None
        model.calibration_ = dist.broadcast(cal)
        if checkpoint_dir is not None and dist.main:
            model.save(checkpoint_dir)
        dist.barrier()
    finally:
        if dist is not None:
            dist.close()
    return model
