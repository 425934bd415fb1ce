"""The ``--workers`` and ``--scheduler`` options shared by ``ingest`` and ``encode``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

#: ``--workers`` and ``--scheduler`` of ``ingest`` and ``encode``.
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="CPU cores to use: N-1 local worker processes and this one, one thread each; "
        "default: this machine's cores; 1: all in this process on one thread. Small "
        "inputs stay in this process (encode: on N torch threads).",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Address of a running Dask scheduler (e.g. tcp://host:8786) to use instead of "
        "local workers; its workers must see the same files.",
    ),
]

#: xlatent.model.parallel_encode.BLOCK_ROWS and PRELOAD (not imported: they load torch).
ENCODE_BLOCK_ROWS = 8192
ENCODE_PRELOAD = ("xlatent.model.parallel_encode",)


def encode_pool(set_path: Path, workers: int | None, scheduler: str | None) -> Any:
    """The pool ``encode`` runs on, started now in the background (None: the set is
    encoded in this process). Called first, so that the workers start while torch and the
    model load here."""
    from xlatent.core.parallel import Pool, default_workers, needs_pool

    workers = default_workers() if workers is None else workers
    if not needs_pool(2, workers, scheduler):
        return None
    # Started before torch is imported and the file opened (its seal check hashes the whole
    # file): the workers start meanwhile, and are stopped without waiting for them if the set
    # is one block. The view is the one encode_to_file then uses (opened once).
    pool = Pool(workers, scheduler, ENCODE_PRELOAD)
    try:
        from xlatent.model.parallel_encode import open_view

        n = len(open_view(str(Path(set_path).resolve())))
    except BaseException:
        pool.close(abort=True)
        raise
    if not needs_pool(-(-n // ENCODE_BLOCK_ROWS), workers, scheduler):
        pool.close(abort=True)
        return None
    return pool


__all__ = ["ENCODE_BLOCK_ROWS", "ENCODE_PRELOAD", "Scheduler", "Workers", "encode_pool"]
