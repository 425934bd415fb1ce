"""Encoding a SpectrumSet file in row blocks, here or on workers, streamed to the catalogue.

The set is cut into blocks of :data:`BLOCK_ROWS` consecutive rows, the same blocks whatever
the number of workers. Each block is read from the file by whoever encodes it (a worker loads
the model once, from its directory, and runs torch on one thread), and its latent errors are
drawn from a seed of its own (:func:`block_seed`), so the catalogue is the same for any number
of workers. The driver writes the blocks in order: parquet row group by row group through a
``pyarrow.ParquetWriter`` (memory flat), FITS at the end (the catalogue is small).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core import SpectrumSet, atomic_path
from xlatent.core.parallel import Pool, default_workers, needs_pool, ordered_map

#: What a local worker imports before its first task (once, in the forkserver it is forked from).
PRELOAD = ("xlatent.model.parallel_encode",)

#: Rows per block (a multiple of the encoder's batches, 512, and of the error redraws'
#: chunks, so a block's batches are the whole-set run's batches).
BLOCK_ROWS = 8192


@dataclass
class EncodeSummary:
    """What :func:`encode_to_file` wrote."""

    path: Path
    n: int
    latent_dim: int
    n_flagged: int | None  # None: the model has no calibration, so no ood_flag


def block_seed(seed: int, index: int) -> int:
    """The error-redraw seed of block ``index``: ``seed`` itself for the first block (a set of
    one block gets exactly :meth:`encode_catalog`'s errors), then one drawn from
    ``SeedSequence([seed, index])``."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint32)[0])


def checked_rows(path: str | Path) -> int:
    """Number of spectra in a SpectrumSet file, after the checks :meth:`SpectrumSet.open`
    makes and a read of its meta block by block (seal, schema, meta: a damaged file is
    refused here with its one-line error, never in a worker; a damaged block of the arrays
    is refused when it is read). Nothing of the meta is kept: the workers, and the driver,
    hold only the rows of the blocks in flight. The view is this process's cached one."""
    view = open_view(path)
    view.check_meta()
    return len(view)


#: One open view and one loaded model per process (a worker encodes many blocks of the
#: same file with the same model), each kept with the stamp of what it was made from.
_CACHE: dict[str, tuple[tuple, Any]] = {}


def _stamp(path: str | None) -> tuple:
    """What tells one version of a file or model directory from the next: a set rewritten at
    the same path, or a model saved again into its directory, gets a new stamp (a rename into a
    directory changes its mtime)."""
    if path is None:
        return (None,)
    st = Path(path).stat()
    return (path, st.st_ino, st.st_mtime_ns, st.st_size)


def _cached(kind: str, path: str | None, make: Any) -> Any:
    """``make(stamp)`` for this version of ``path``, made once (the stamp taken before)."""
    stamp = _stamp(path)
    hit = _CACHE.get(kind)
    if hit is None or hit[0] != stamp:
        if hit is not None and hasattr(hit[1], "close"):
            hit[1].close()
        _CACHE[kind] = (stamp, make(stamp))
    return _CACHE[kind][1]


def open_view(path: str | Path, verified: tuple | None = None) -> Any:
    """This process's lazy view of a SpectrumSet file (opened once per version of the file).
    ``verified``: the stamp of the file version whose seal the driver checked (the SHA-256 of
    the whole file, ~0.3 s per 200k spectra): a worker that finds the same stamp does not
    hash it again; any other version is checked."""
    key = str(path)
    return _cached("view", key, lambda stamp: SpectrumSet.open(key, check_seal=stamp != verified))


def read_rows(path: str | Path, a: int, b: int, verified: tuple | None = None) -> SpectrumSet:
    """Rows ``a:b`` of a SpectrumSet file: the lazy view's slice (one view per process; it
    reads the block's meta rows, never the whole table)."""
    return open_view(path, verified)[a:b]


def load_cached(model_dir: str | None) -> Any:
    """The model in ``model_dir`` (None: the pretrained one), loaded once per process."""
    from xlatent.model import load_model

    return _cached("model", model_dir, lambda _: load_model(model_dir))


def encode_block(
    set_path: str, model_dir: str | None, a: int, b: int, index: int, n_draws: int, seed: int,
    one_thread: bool = False, verified: tuple | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The task: the catalogue rows ``a:b``, block ``index`` (which seeds its
    redraws). ``one_thread``: run torch on one thread (a worker process); ``verified``: the
    file's stamp when the driver checked its seal (:func:`open_view`)."""
    if one_thread:
        import torch

        torch.set_num_threads(1)
    model = load_cached(model_dir)
    block = read_rows(set_path, a, b, verified)
    return model.encode_catalog(block, n_draws=n_draws, seed=block_seed(seed, index))


def start_pool(workers: int | None, scheduler: str | None) -> Pool:
    """The workers :func:`encode_to_file` runs on, started in the background (give it as
    ``pool`` and close it after): start them first, then read and check the input and load the
    model in this process while they start."""
    return Pool(default_workers() if workers is None else workers, scheduler, PRELOAD)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch runs ``n`` threads inside (``--workers N`` means N cores), its setting after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_to_file(
    set_path: str | Path,
    out: str | Path,
    model_dir: str | Path | None = None,
    *,
    n_draws: int = 16,
    seed: int = 0,
    fmt: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    block_rows: int = BLOCK_ROWS,
    pool: Pool | None = None,
) -> EncodeSummary:
    """Encode the SpectrumSet file ``set_path`` into the catalogue ``out`` (parquet, or FITS
    by suffix or ``fmt``), block by block.

    ``workers`` (default: this machine's cores) local cores (``workers - 1`` processes and this
    one, a torch thread each), or the Dask cluster at ``scheduler`` (its workers must see
    ``set_path`` and ``model_dir``), or ``pool`` (from :func:`start_pool`, left open); a set
    of one block (``block_rows`` spectra) or less, or ``workers`` = 1, is encoded in this
    process on ``workers`` torch threads. The model goes to the workers as its directory,
    never pickled. The catalogue is the same for any number of workers; it equals
    :meth:`encode_catalog` of the whole set but for the errors of rows past the first block
    (each block draws its own). ``out`` is written atomically.
    """
    set_path, out = Path(set_path), Path(out)
    path = str(set_path.resolve())
    # The seal and schema checks, once: this process's blocks and meta check reuse the view,
    # and workers that see the same file version do not hash it again.
    # The stamp of the version the checked open saw (the cache's, taken just before it).
    n, verified = len(open_view(path)), _CACHE["view"][0]
    workers = default_workers() if workers is None else workers
    bounds = [(a, min(a + block_rows, n)) for a in range(0, n, block_rows)] or [(0, 0)]
    with ExitStack() as stack:
        if pool is None and needs_pool(len(bounds), workers, scheduler):
            # Started before the model is loaded here: the workers start meanwhile.
            pool = stack.enter_context(start_pool(workers, scheduler))
        mdir = None if model_dir is None else str(Path(model_dir).resolve())
        model = load_cached(mdir)  # in this process: the tasks run here reuse it
        local = pool is None
        if local:  # N workers = N cores: torch's threads here
            stack.enter_context(torch_threads(min(workers, default_workers())))
        elif pool.local:  # this process encodes blocks too: one core of the pool's
            stack.enter_context(torch_threads(1))
        tasks = [(path, mdir, a, b, i, n_draws, seed, not local, verified)
                 for i, (a, b) in enumerate(bounds)]  # fmt: skip
        # The meta check (once here: the blocks are read without re-checking the file) runs
        # while the workers encode the first blocks; its error comes before theirs.
        frames = ordered_map(encode_block, tasks, pool=pool, first=lambda: checked_rows(path))
        flagged = 0 if getattr(model, "calibration_", None) is not None else None
        flagged = _write(frames, out, fmt, flagged, n, progress)
    return EncodeSummary(out, n, model.latent_dim, flagged)


def _write(frames: Iterator[pd.DataFrame], out: Path, fmt: str | None, flagged: int | None,
           n: int, progress: bool) -> int | None:  # fmt: skip
    """Write the blocks' frames to ``out`` in order; the ood_flag count (None: no flags)."""
    from tqdm.auto import tqdm

    from xlatent.model.catalog import _is_fits, write_latents

    bar = tqdm(total=n, desc="encode", unit="spectrum", disable=not progress or n < 2)
    with bar:
        if _is_fits(out, fmt):
            parts = []
            for df in frames:
                parts.append(df)
                flagged = _count(flagged, df)
                bar.update(len(df))
            write_latents(pd.concat(parts, ignore_index=True), out, fmt="fits")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            with atomic_path(out) as tmp:
                writer = None
                for df in frames:
                    schema = None if writer is None else writer.schema
                    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    flagged = _count(flagged, df)
                    bar.update(len(df))
                writer.close()
    return flagged


def _count(flagged: int | None, df: pd.DataFrame) -> int | None:
    if flagged is None or "ood_flag" not in df:
        return flagged
    return flagged + int(df["ood_flag"].sum())


__all__ = [
    "BLOCK_ROWS", "PRELOAD", "EncodeSummary", "block_seed", "encode_block", "encode_to_file",
    "open_view",
    "start_pool", "torch_threads",
]  # fmt: skip
