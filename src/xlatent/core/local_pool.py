"""Worker processes on this machine for :class:`xlatent.core.parallel.Pool`, without Dask.

A ``concurrent.futures.ProcessPoolExecutor`` whose processes are forked from a
``multiprocessing`` forkserver that imported the task's modules once (a worker then starts
in milliseconds instead of starting Python and importing torch), BLAS and OpenMP on one
thread, started in a background thread so that the caller works meanwhile. No scheduler,
nanny or event loop: with a Dask ``LocalCluster``, ingest on two workers spent ~50% more CPU
than on one, and the workers took seconds to start.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

#: Thread settings of the forkserver (so of every worker forked from it): one thread each,
#: as the pool's cores are its processes. Set where the caller has not set them.
ONE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_ENV_LOCK = threading.Lock()
#: Pools closed while they started: this process waits for their start to end at exit (a
#: worker forked as its parent exits prints a traceback), and that start stops them.
_ABORTED: list[LocalProcesses] = []


def _join_aborted() -> None:
    for pool in _ABORTED:
        pool._thread.join(timeout=30)


atexit.register(_join_aborted)


def _worker_init() -> None:
    """In each worker: Ctrl-C is the driver's to handle (it stops the workers); torch on one
    thread where the preload imported it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _up() -> int:
    return os.getpid()


class LocalProcesses:
    """``n`` worker processes, started in a background thread (see the module's docstring)."""

    def __init__(self, n: int, preload: Sequence[str] = ()) -> None:
        self.n, self.preload = n, list(preload)
        self._executor: Any = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._on_ready: list[Callable[[], object]] = []
        self._thread = threading.Thread(target=self._start, name="xlatent-workers-start",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _start(self) -> None:
        try:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, wait
            from multiprocessing import forkserver

            ctx = mp.get_context("forkserver")
            # The preload acts only while this process's forkserver has not started yet.
            ctx.set_forkserver_preload(self.preload)
            with _ENV_LOCK:  # the server copies the environment when it starts
                added = [v for v in ONE_THREAD_ENV if v not in os.environ]
                os.environ.update(dict.fromkeys(added, "1"))
                try:
                    forkserver.ensure_running()
                finally:
                    for v in added:
                        os.environ.pop(v, None)
            with self._lock:
                if self._closed:  # stopped while the server started: fork no workers (one
                    return  # forked as this process exits prints a traceback)
            ex = ProcessPoolExecutor(self.n, mp_context=ctx, initializer=_worker_init)
            # One call a worker: each submit forks one process (the first waits for the
            # server's imports); done here, never in the caller's submit.
            wait([ex.submit(_up) for _ in range(self.n)])
        except BaseException as exc:  # raised in the caller's thread by submit()
            self._error = exc
            return
        with self._lock:
            if not self._closed:
                self._executor = ex
                ready, self._on_ready = self._on_ready, []
        if self._executor is None:
            _stop(ex, abort=True)  # closed while starting: unused
            return
        for fn in ready:
            try:
                fn()
            except Exception:  # noqa: BLE001 - the caller's next submit raises what broke
                pass

    def ready(self) -> bool:
        return self._executor is not None or not self._thread.is_alive()

    def wait_ready(self) -> None:
        self._thread.join()

    def when_ready(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` (in the starting thread) as soon as the processes are up, or now if
        they are, or failed to start (its submit then raises why)."""
        with self._lock:
            if self._executor is None and self._thread.is_alive() and self._error is None:
                self._on_ready.append(fn)
                return
        fn()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:  # starting (never the start thread: it has set it)
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._executor.submit(fn, *args)

    def close(self, abort: bool = False) -> None:
        """Stop the processes: after their tasks, or (``abort``) at once; ``abort`` while they
        start returns at once (the start stops them when it ends)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if abort and self._thread.is_alive():
                _ABORTED.append(self)
                return
        self._thread.join()
        ex, self._executor = self._executor, None
        if ex is not None:
            _stop(ex, abort)


def _stop(ex: Any, abort: bool) -> None:
    if abort:
        for p in list(getattr(ex, "_processes", {}).values()):
            p.terminate()
    ex.shutdown(wait=True, cancel_futures=True)


__all__ = ["LocalProcesses"]
