"""Run independent tasks serially or on a Dask cluster, results back in submission order.

:func:`ordered_map` is what parallel ingest and encoding share: with one worker and no
scheduler it is a plain loop in this process (no Dask imported); otherwise it starts a
``dask.distributed.LocalCluster`` of single-threaded worker processes, or connects to the
scheduler at ``scheduler``, keeps a bounded number of tasks in flight (so the caller's memory
stays flat whatever the number of tasks) and yields each result in the order the tasks were
given, as soon as it and all before it are done.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def default_workers() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return max(1, count() or 1)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_workers(workers: int) -> int:
    """``workers`` as a positive int; ValueError otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, not {workers!r}")
    return workers


def ordered_map(
    fn: Callable[..., Any],
    tasks: Iterable[tuple[Any, ...]],
    workers: int = 1,
    scheduler: str | None = None,
    max_in_flight: int | None = None,
) -> Iterator[Any]:
    """``fn(*task)`` for each task, yielded in task order.

    ``workers`` = 1 and no ``scheduler``: in this process, one task at a time. Otherwise on
    Dask: ``scheduler`` (an address such as ``tcp://host:8786``) connects to a running
    cluster, else a local cluster of ``workers`` processes (one thread each) is started for
    this call and closed after it. At most ``max_in_flight`` tasks (default 2 per worker) are
    submitted but not yet yielded. ``fn`` must be importable by the workers (a module-level
    function), and its arguments small: send paths, not data.
    """
    check_workers(workers)
    if workers == 1 and scheduler is None:
        for task in tasks:
            yield fn(*task)
        return
    with _client(workers, scheduler) as client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or workers)
        limit = max_in_flight or 2 * n_workers
        pending: deque = deque()
        it = iter(tasks)
        for task in it:
            pending.append(client.submit(fn, *task, pure=False))
            if len(pending) >= limit:
                yield _take(pending)
        while pending:
            yield _take(pending)


def _take(pending: deque) -> Any:
    future = pending.popleft()
    try:
        return future.result()
    finally:
        future.release()  # the worker may drop the result now: memory stays bounded


class _client:
    """A Dask client (and its local cluster when it started one), closed on exit."""

    def __init__(self, workers: int, scheduler: str | None) -> None:
        self.workers, self.scheduler = workers, scheduler

    def __enter__(self) -> Any:
        import logging

        from dask.distributed import Client, LocalCluster

        if self.scheduler is not None:
            self.cluster = None
            self.client = Client(self.scheduler)
        else:
            # Workers are processes with one thread each (the readers and torch hold the GIL
            # or spin their own threads); no dashboard, quiet logs.
            self.cluster = LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR,
            )  # fmt: skip
            self.client = Client(self.cluster)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


__all__ = ["check_workers", "default_workers", "ordered_map"]
