"""Run independent tasks serially, on local worker processes or on a Dask cluster, results
back in submission order.

:func:`ordered_map` is what parallel ingest and encoding share: with one worker and no
scheduler it is a plain loop in this process; with ``workers`` > 1 it runs on a :class:`Pool`
of ``workers - 1`` local processes *and this process*, which runs a task itself whenever the
next result is not ready yet (while the processes start, and while they are all busy); with a
``scheduler`` it runs on that Dask cluster. It keeps a bounded number of tasks in flight (so
the caller's memory stays flat whatever the number of tasks) and yields each result in the
order the tasks were given, as soon as it and all before it are done.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from xlatent.core.local_pool import LocalProcesses


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
    """Whether :func:`ordered_map` of ``n_tasks`` tasks is worth a pool: always with a
    ``scheduler``; locally with more than one worker and more than one task."""
    return scheduler is not None or (workers > 1 and n_tasks > 1)


def ordered_map(
    fn: Callable[..., Any],
    tasks: Iterable[tuple[Any, ...]],
    workers: int = 1,
    scheduler: str | None = None,
    max_in_flight: int | None = None,
    pool: Pool | None = None,
    first: Callable[[], object] | None = None,
) -> Iterator[Any]:
    """``fn(*task)`` for each task, yielded in task order.

    ``workers`` = 1 and no ``scheduler``: in this process, one task at a time. Otherwise a
    :class:`Pool` of ``workers`` local cores (this process included) or the Dask cluster at
    ``scheduler`` (e.g. ``tcp://host:8786``) is started for this call and closed after it.
    At most ``max_in_flight`` tasks (default 2 per worker) are submitted but not yet
    yielded. ``fn`` must be importable by the workers (a module-level function; its module is
    imported before the local processes fork), and its arguments small: send paths, not
    data. ``pool``: run on it (``workers`` and ``scheduler`` are then ignored) and leave it
    running. An exception of a task is raised when its result is due. ``first()`` runs in
    this process before any result is yielded, while the workers run the first tasks (a
    check of the input whose error must come before theirs).
    """
    check_workers(workers)
    if pool is None and workers == 1 and scheduler is None:
        if first is not None:
            first()
        for task in tasks:
            yield fn(*task)
        return
    own = pool is None
    p = Pool(workers, scheduler, (fn.__module__,)) if own else pool
    try:
        q = _InFlight(p, fn)
        limit = max_in_flight or (3 if p.local else 2) * p.n_workers()
        it = iter(tasks)
        for task in it:
            q.add(task)
            if len(q) >= limit:
                break
        if first is not None:
            if p.local:  # the processes get their first tasks the moment they are up
                p.when_ready(q.feed)
            first()
        for task in it:
            while len(q) >= limit:
                yield q.next()
            q.add(task)
        while len(q):
            yield q.next()
    except BaseException:
        if own:
            p.close(abort=True)
        raise
    else:
        if own:
            p.close()


class _Slot:
    """One task of :func:`ordered_map`: submitted to the pool, or run in this process."""

    def __init__(self, fn: Callable[..., Any], task: tuple[Any, ...]) -> None:
        self.fn, self.task = fn, task
        self.future: Any = None
        self.here = False  # taken (and run at once) by this process
        self.value: Any = None
        self.error: Exception | None = None

    def free(self) -> bool:
        return self.future is None and not self.here

    def settled(self) -> bool:
        return self.here or (self.future is not None and self.future.done())

    def run_here(self) -> None:
        try:
            self.value = self.fn(*self.task)
        except Exception as exc:  # raised in its turn, as a worker's would be
            self.error = exc

    def result(self) -> Any:
        if self.here:
            if self.error is not None:
                raise self.error
            return self.value
        try:
            return self.future.result()
        finally:
            release = getattr(self.future, "release", None)
            if release is not None:  # a Dask worker may drop the result now
                release()


class _InFlight:
    """The tasks of one :func:`ordered_map` submitted or taken but not yet yielded, in order.

    On a local pool each process holds one task at a time; when it finishes, the pool's
    result thread submits the next free one (hence the lock), and this process takes the next
    free task whenever the head is not done. So it never waits while there is work, and no
    task waits behind a busy worker while another core is idle (the last ones included).
    """

    def __init__(self, pool: Pool, fn: Callable[..., Any]) -> None:
        self.pool, self.fn = pool, fn
        self.slots: deque[_Slot] = deque()
        self.lock = threading.RLock()  # RLock: a callback may run in the submitting thread

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, task: tuple[Any, ...]) -> None:
        s = _Slot(self.fn, task)
        if not self.pool.local:
            s.future = self.pool.submit(self.fn, *task)
        with self.lock:
            self.slots.append(s)

    def feed(self) -> None:
        """Give free tasks, in order, to the processes that have none."""
        if not self.pool.ready():
            return
        with self.lock:
            busy = sum(s.future is not None and not s.future.done() for s in self.slots)
            for s in self.slots:
                if busy >= self.pool.processes:
                    return
                if s.free():
                    s.future = self.pool.submit(self.fn, *s.task)
                    s.future.add_done_callback(self._finished)
                    busy += 1

    def _finished(self, _future: Any) -> None:
        try:
            self.feed()
        except Exception:  # the pool is closing or broken: the next feed here raises it
            pass

    def take(self) -> _Slot | None:
        with self.lock:
            s = next((s for s in self.slots if s.free()), None)
            if s is not None:
                s.here = True
            return s

    def next(self) -> Any:
        """The head's result; on a local pool, this process works until it is done."""
        if self.pool.local:
            self.feed()
            while not self.slots[0].settled():
                s = self.take()
                if s is None:
                    break
                s.run_here()
        with self.lock:
            head = self.slots.popleft()
        return head.result()


class Pool:
    """Workers for :func:`ordered_map`: ``workers`` local cores (``workers - 1`` processes,
    see :class:`LocalProcesses`; this process is the last core) or the running Dask cluster
    at ``scheduler``. Both start in the background: the constructor returns at once. Local
    processes are forked from a server process that imported ``preload`` (module names,
    e.g. the task's module and so torch) once. Close it (or use it as a context manager).
    """

    def __init__(self, workers: int, scheduler: str | None = None, preload: Sequence[str] = ()):
        self.workers, self.scheduler = check_workers(workers), scheduler
        self.local = scheduler is None
        self.processes = max(1, workers - 1) if self.local else 0
        if self.local:
            self._impl: Any = LocalProcesses(self.processes, preload)
        else:
            self._impl = _DaskClient(scheduler)

    def ready(self) -> bool:
        """Whether the workers are up (False while they start)."""
        return self._impl.ready()

    def wait_ready(self) -> None:
        """Wait until the workers are up (or failed to start)."""
        self._impl.wait_ready()

    def when_ready(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` as soon as the local processes are up (in the thread that started
        them), or now if they are; a Dask pool calls it now."""
        if self.local:
            self._impl.when_ready(fn)
        else:
            fn()

    def n_workers(self) -> int:
        """Cores working on tasks (a Dask cluster's: once connected)."""
        return self.workers if self.local else self._impl.n_workers(self.workers)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A future of ``fn(*args)`` on a worker (waits for the workers to be up)."""
        return self._impl.submit(fn, *args)

    def client(self) -> Any:
        """The ``dask.distributed.Client`` of a ``scheduler`` pool, once connected."""
        if self.local:
            raise TypeError("a local pool has no Dask client")
        return self._impl.client()

    def close(self, abort: bool = False) -> None:
        """Stop the local processes (``abort``: at once, dropping tasks under way) or close the
        Dask client; waits for a start still under way."""
        self._impl.close(abort)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(abort=exc_type is not None)


class _DaskClient:
    """A ``dask.distributed.Client`` connected in a background thread."""

    def __init__(self, scheduler: str) -> None:
        import threading

        self._client: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, args=(scheduler,), daemon=True,
                                        name="xlatent-dask-connect")  # fmt: skip
        self._thread.start()

    def _start(self, scheduler: str) -> None:
        try:
            from dask.distributed import Client

            self._client = Client(scheduler)
        except BaseException as exc:  # raised in the caller's thread by client()
            self._error = exc

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def wait_ready(self) -> None:
        self._thread.join()

    def client(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def n_workers(self, default: int) -> int:
        return max(1, len(self.client().scheduler_info().get("workers", {})) or default)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.client().submit(fn, *args, pure=False)

    def close(self, abort: bool = False) -> None:
        self._thread.join()
        if self._client is not None:
            self._client.close()
        self._client = None


__all__ = ["Pool", "check_workers", "default_workers", "needs_pool", "ordered_map"]
