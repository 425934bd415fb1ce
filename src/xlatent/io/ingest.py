"""Read spectra from files, directories and globs into one SpectrumSet.

:func:`read_spectra` is the entry point (``xlatent.read_spectra``); :func:`ingest_paths` is the
same batch returning an :class:`IngestResult` with every skipped file and its one-line reason.
Each file is read by its format's reader from the one table in :mod:`xlatent.io.registry`
(OGIP PHA with BACKFILE/ANCRFILE/RESPFILE, Multimodal Universe Chandra HDF5, SpectrumSet
files). A bad file is skipped with a one-line reason; nothing else is lost.
:func:`combine_by` (from :mod:`xlatent.io.combine`) sums the per-observation spectra of each
source into one (``xlatent ingest --combine-by name``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.parallel import Pool, check_workers, default_workers, ordered_map
from xlatent.core.spectrumset_view import summary_text
from xlatent.io.combine import combine_by
from xlatent.io.discover import discover
from xlatent.io.grid_mapper import GridMapper
from xlatent.io.ingest_chunks import CHUNK_FILES, Chunk, Plan, chunked, plan, read_chunk, read_files
from xlatent.io.ingest_file import open_writer, spool
from xlatent.io.ogip_response import DEFAULT_CACHE, ResponseCache

#: Fewer files than this are read in this process even with workers > 1: starting a local
#: cluster costs seconds, more than reading a few hundred files.
MIN_PARALLEL_FILES = 400
#: Meta rows written at once at the end of a streamed ingest (a few MB of strings).
META_ROWS = 65536


@dataclass
class IngestResult:
    """What an ingest produced: the set, and each skipped file with its reason."""

    spectrum_set: SpectrumSet | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_ingested(self) -> int:
        return 0 if self.spectrum_set is None else len(self.spectrum_set)

    def summary(self) -> str:
        lines = [f"ingested {self.n_ingested} spectra, skipped {len(self.skipped)} files"]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


def ingest_paths(
    paths: str | Path | Sequence[str | Path],
    grid: EnergyGrid | None = None,
    progress: bool = True,
    cache: ResponseCache | None = DEFAULT_CACHE,
    exclude: str | Path | Iterable[str | Path] = (),
    *,
    workers: int = 1,
    scheduler: str | None = None,
) -> IngestResult:
    """Ingest spectra into one SpectrumSet on ``grid`` (default :meth:`EnergyGrid.default`).

    Every file that cannot be used, for whatever reason (an exception of any type from its
    reader, a FIFO, a symlink loop, a damaged or hostile file), is skipped with a one-line
    reason in ``result.skipped`` and the batch goes on; the rest are kept, in file-name order
    (PHA spectra first, then the sets HDF5 files hold). Paths in ``exclude`` (such as the
    output file about to be written) are never read. ``workers`` > 1 or ``scheduler`` read
    chunks of files on workers (see :func:`ingest_to_file`); the set is the same.
    """
    grid, files, skipped = _discover(paths, grid, exclude)
    chunks = list(_read(files, grid, cache, workers, scheduler, progress))
    p = plan(chunks, skipped, grid)
    if p.meta is None:
        return IngestResult(None, p.skipped)
    pieces = [_arrays(chunks, p, i, j) for i, j in p.pieces(chunks)]
    cat = [np.concatenate([a[k] for a in pieces]) for k in range(4)]
    s = SpectrumSet(
        grid=_first_grid(chunks, p), counts=cat[0], background=cat[1], exposure_s=cat[2],
        effective_area_cm2=cat[3], meta=p.meta, provenance=p.provenance,
        expected_counts=np.concatenate([a[4] for a in pieces]) if p.has_truth else None,
    )  # fmt: skip
    return IngestResult(s, p.skipped)


@dataclass
class IngestFileResult:
    """What :func:`ingest_to_file` wrote: the file (None: nothing could be read), how many
    spectra, the skipped files and the set's summary lines."""

    path: Path | None
    n_ingested: int
    skipped: list[tuple[str, str]]
    summary: str = ""


def ingest_to_file(
    paths: str | Path | Sequence[str | Path],
    out: str | Path,
    grid: EnergyGrid | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    cache: ResponseCache | None = DEFAULT_CACHE,
    exclude: str | Path | Iterable[str | Path] = (),
    finish: Callable[[SpectrumSet], SpectrumSet] | None = None,
    chunk_files: int = CHUNK_FILES,
    min_parallel: int = MIN_PARALLEL_FILES,
) -> IngestFileResult:
    """Ingest straight into the SpectrumSet file ``out`` with memory flat in the number of files.

    Files are read in chunks of ``chunk_files`` consecutive files: in this process when
    ``workers`` is 1, else on ``workers`` local cores (default: this machine's cores;
    ``workers - 1`` single-threaded processes and this one, see
    :func:`xlatent.core.parallel.ordered_map`), or on the running Dask cluster at
    ``scheduler``, whose workers must see the same files. Fewer than ``min_parallel`` files
    are read here whatever ``workers`` is (workers take a second or two to start). Chunk
    arrays are spooled beside ``out`` and written in file order, so the file is the same as
    ``ingest_paths(...).spectrum_set.write(out)`` for any number of workers. ``finish``
    may change the whole set's meta and provenance (not its rows) before anything is
    written: it gets the set with placeholder arrays. ``out`` is written atomically.
    """
    out = Path(out)
    excl = [exclude] if isinstance(exclude, (str, Path)) else list(exclude)
    workers = check_workers(default_workers() if workers is None else workers)
    exposure: list[np.ndarray] = []
    with ExitStack() as stack:
        # Local workers start while the files are found: they are up for the first chunks.
        pool = None
        if scheduler is None and workers > 1:
            pool = stack.enter_context(Pool(workers, None, (read_chunk.__module__,)))
        grid, files, skipped = _discover(paths, grid, [out, *excl])
        if pool is not None and len(files) < min_parallel:
            pool.close(abort=True)  # read here: the workers stop as soon as they are up
            pool = None
        sp = stack.enter_context(spool(out))
        # While every PHA row so far is certainly kept (it names a background, so it is not
        # one), its chunk's arrays go straight into the file, in order, as the workers read
        # on: the driver compresses while they read instead of after. From the first chunk
        # that may lose rows on, arrays wait in the spool for the plan.
        w, chunks, streamed = None, [], 0
        for i, c in enumerate(_read(files, grid, cache, workers, scheduler, progress,
                                    chunk_files, min_parallel, pool)):  # fmt: skip
            stream = streamed == i and _all_kept(c)
            if stream and c.rows is not None:
                if w is None:
                    w = stack.enter_context(open_writer(out, c.rows.grid, []))
                w.append_arrays(c.rows)
                exposure.append(c.rows.exposure_s)
            streamed += stream
            chunks.append(sp.keep(i, c, rows=not stream))
        p = plan(chunks, skipped, grid)
        if p.meta is None:
            return IngestFileResult(None, 0, p.skipped)
        first = _first_grid(chunks, p)
        whole = _meta_set(p, first)
        if finish is not None:
            whole = finish(whole)
            if len(whole) != len(p.meta):
                raise ValueError("finish may change meta and provenance, not the rows")
        if w is None:
            w = stack.enter_context(open_writer(out, first, whole.provenance))
        else:
            w.set_provenance(whole.provenance)
        a = w.n
        for i, j in p.pieces(chunks):
            if j is None and i < streamed:
                continue  # in the file already
            arr = sp.load(i, j, p.keep[i])
            n = len(arr[0])
            w.append_arrays(SpectrumSet(
                grid=first, counts=arr[0], background=arr[1], exposure_s=arr[2],
                effective_area_cm2=arr[3], meta=whole.meta.iloc[a : a + n],
                expected_counts=arr[4] if p.has_truth else None,
            ))  # fmt: skip
            exposure.append(arr[2])
            a += n
        for a in range(0, len(whole.meta), META_ROWS):  # whole columns, in a few blocks
            w.append_meta(whole.meta.iloc[a : a + META_ROWS])
    text = summary_text(
        repr(whole),
        np.concatenate(exposure),
        whole.meta["net_counts_b"].to_numpy(),
        whole.meta,
        p.has_truth,
    )
    return IngestFileResult(out, len(whole), p.skipped, text)


def _all_kept(c: Chunk) -> bool:
    """Whether every PHA row of ``c`` is kept whatever the other chunks hold: one that names
    a background file is never dropped as a pure background (see ``ingest_chunks.plan``)."""
    if c.rows is None:
        return True
    meta = c.rows.meta
    return "bkg_file" in meta and all(bool(b) for b in meta["bkg_file"])


def _discover(
    paths: str | Path | Sequence[str | Path], grid: EnergyGrid | None,
    exclude: str | Path | Iterable[str | Path],
) -> tuple[EnergyGrid, list[Path], list[tuple[str, str]]]:  # fmt: skip
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if isinstance(exclude, (str, Path)):
        exclude = [exclude]
    files, skipped = discover(paths, exclude=exclude)
    return grid or EnergyGrid.default(), files, skipped


def _read(
    files: list[Path], grid: EnergyGrid, cache: ResponseCache | None, workers: int,
    scheduler: str | None, progress: bool, chunk_files: int = CHUNK_FILES,
    min_parallel: int = MIN_PARALLEL_FILES, pool: Pool | None = None,
) -> Iterator[Chunk]:  # fmt: skip
    """The chunks of ``files``, in order, read here or on workers (``pool``: these), with a
    progress bar."""
    from tqdm.auto import tqdm

    check_workers(workers)
    parts = chunked(files, chunk_files)
    bar = tqdm(total=len(files), desc="ingest", unit="file", disable=not progress or len(files) < 2)
    if pool is None and scheduler is None and (workers == 1 or len(files) < min_parallel):
        mapper = GridMapper(grid, cache)
        done = (read_files([Path(f) for f in part], grid, mapper) for part in parts)
    else:  # each worker process keeps its own response cache
        done = ordered_map(read_chunk, [(part, grid, cache is not None) for part in parts],
                           workers, scheduler, pool=pool)  # fmt: skip
    with bar:
        for chunk in done:
            bar.update(chunk.n_files)
            yield chunk


def _arrays(chunks: list[Chunk], p: Plan, i: int, j: int | None) -> list:
    s = chunks[i].rows if j is None else chunks[i].sets[j]
    sel = p.keep[i] if j is None else slice(None)
    exp = None if s.expected_counts is None else s.expected_counts[sel]
    return [s.counts[sel], s.background[sel], s.exposure_s[sel], s.effective_area_cm2[sel], exp]


def _first_grid(chunks: list[Chunk], p: Plan) -> EnergyGrid:
    """The grid of the first piece (as SpectrumSet.concat keeps the first set's)."""
    i, j = p.pieces(chunks)[0]
    return (chunks[i].rows if j is None else chunks[i].sets[j]).grid


def _meta_set(p: Plan, grid: EnergyGrid) -> SpectrumSet:
    n, m = len(p.meta), grid.n_bins
    zeros = np.broadcast_to(np.float64(0.0), (n, m))
    return SpectrumSet(
        grid=grid, counts=zeros, background=zeros, exposure_s=np.broadcast_to(1.0, (n,)),
        effective_area_cm2=zeros, meta=p.meta, provenance=p.provenance,
        expected_counts=zeros if p.has_truth else None,
    )  # fmt: skip


def read_spectra(
    paths: str | Path | Sequence[str | Path], grid: EnergyGrid | None = None, **kwargs
) -> SpectrumSet:
    """One entry point for every format; raises if nothing could be read."""
    result = ingest_paths(paths, grid=grid, **kwargs)
    if result.spectrum_set is None:
        reasons = "; ".join(f"{p}: {r}" for p, r in result.skipped[:3])
        raise InputError(str(paths), f"nothing could be ingested ({reasons})")
    return result.spectrum_set


__all__ = [
    "IngestFileResult",
    "IngestResult",
    "combine_by",
    "discover",
    "ingest_paths",
    "ingest_to_file",
    "read_spectra",
]
