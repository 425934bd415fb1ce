"""Run independent tasks serially or on a Dask cluster, results back in submission order.

:func:`ordered_map` is what parallel ingest and encoding share: with one worker and no
scheduler it is a plain loop in this process (no Dask imported); otherwise it starts a
``dask.distributed.LocalCluster`` of single-threaded worker processes, or connects to the
scheduler at ``scheduler``, keeps a bounded number of tasks in flight (so the caller's memory
stays flat whatever the number of tasks) and yields each result in the order the tasks were
given, as soon as it and all before it are done. A :class:`Pool` starts those workers in a
background thread, so that the caller reads its input or loads a model meanwhile, and local
workers are forked from a server process that imported the task's modules once.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
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


def needs_pool(n_tasks: int, workers: int, scheduler: str | None) -> bool:
    """Whether :func:`ordered_map` of ``n_tasks`` tasks is worth Dask workers: always with a
    ``scheduler``; locally with more than one worker and more than one task."""
    return scheduler is not None or (workers > 1 and n_tasks > 1)


def ordered_map(
    fn: Callable[..., Any],
    tasks: Iterable[tuple[Any, ...]],
    workers: int = 1,
    scheduler: str | None = None,
    max_in_flight: int | None = None,
    pool: Pool | None = None,
) -> Iterator[Any]:
    """``fn(*task)`` for each task, yielded in task order.

    ``workers`` = 1 and no ``scheduler``: in this process, one task at a time. Otherwise on
    Dask: ``scheduler`` (an address such as ``tcp://host:8786``) connects to a running
    cluster, else a local cluster of ``workers`` processes (one thread each) is started for
    this call and closed after it. At most ``max_in_flight`` tasks (default 2 per worker) are
    submitted but not yet yielded. ``fn`` must be importable by the workers (a module-level
    function), and its arguments small: send paths, not data. ``pool``: run on these workers
    (``workers`` and ``scheduler`` are then ignored) and leave them running.
    """
    check_workers(workers)
    if pool is None and workers == 1 and scheduler is None:
        for task in tasks:
            yield fn(*task)
        return
    with Pool(workers, scheduler) if pool is None else _Borrowed(pool) as p:
        client = p.client()
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


class Pool:
    """Dask workers for :func:`ordered_map`, started in a background thread: the constructor
    returns at once and :meth:`client` waits for them. ``workers`` local processes of one thread
    each, or the running cluster at ``scheduler``. Local workers are forked from a
    ``multiprocessing`` forkserver that imported ``preload`` (module names, e.g. the task's
    module and so torch) once, instead of each worker starting Python and importing them
    again. Close it (or use it as a context manager) to stop the local cluster.
    """

    def __init__(self, workers: int, scheduler: str | None = None, preload: Sequence[str] = ()):
        self.workers, self.scheduler = check_workers(workers), scheduler
        self.preload = list(preload)
        self._client: Any = None
        self._cluster: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="xlatent-dask-start", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            from dask.distributed import Client

            if self.scheduler is not None:
                self._client = Client(self.scheduler)
            else:
                self._cluster = _local_cluster(self.workers, self.preload)
                self._client = Client(self._cluster)
        except BaseException as exc:  # raised in the caller's thread by client()
            self._error = exc

    def client(self) -> Any:
        """The ``dask.distributed.Client``, once the workers are up (raises what starting
        them raised)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def close(self) -> None:
        """Close the client and the local cluster (waits for a start still under way)."""
        self._thread.join()
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Borrowed:
    """A caller's pool in a ``with``: not closed on exit."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def __enter__(self) -> Pool:
        return self.pool

    def __exit__(self, *exc: object) -> None:
        pass


def _local_cluster(workers: int, preload: Sequence[str]) -> Any:
    """A LocalCluster of ``workers`` one-thread processes forked from a forkserver that imported
    ``preload`` (with spawn, every worker starts Python and imports everything itself: seconds
    a worker), with glibc's malloc settings and no profiler. The nanny puts
    OMP/MKL/OPENBLAS_NUM_THREADS=1 in the environment before the first process (and so the
    forkserver) starts, so BLAS runs one thread in the workers."""
    import logging

    import dask
    from dask.distributed import LocalCluster
    from distributed.utils import get_mp_context

    # Dask sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's adaptive mmap
    # threshold: every large buffer (torch's activations) is then mmapped and unmapped again,
    # and page faults doubled a worker's CPU time per block (sys time); None leaves glibc's
    # defaults, as in this process. Dask's statistical profiler (the dashboard's, off here)
    # samples the task's stack every 10 ms: ~10% more CPU a block.
    config = {
        "distributed.worker.multiprocessing-method": "forkserver",
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(config):
        # Dask sets its own preload list on first use; ours (set after it) replaces it. It has
        # effect only while this process's forkserver has not started yet.
        get_mp_context().set_forkserver_preload(["distributed", *preload])
        # Workers are processes with one thread each (the readers and torch hold the GIL or
        # spin their own threads); no dashboard, quiet logs.
        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            dashboard_address=":0", silence_logs=logging.ERROR,
        )  # fmt: skip


__all__ = ["Pool", "check_workers", "default_workers", "needs_pool", "ordered_map"]
