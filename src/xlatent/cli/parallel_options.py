"""The ``--workers`` and ``--scheduler`` options shared by ``ingest`` and ``encode``."""

from __future__ import annotations

from typing import Annotated

import typer

#: ``--workers`` and ``--scheduler`` of ``ingest`` and ``encode``.
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Local worker processes (Dask LocalCluster, one thread each); default: this "
        "machine's cores; 1: all in this process, no Dask. Small inputs stay in one process.",
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

__all__ = ["Scheduler", "Workers"]
