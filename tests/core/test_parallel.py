"""ordered_map and the local pool (issue 17): the driver is one of the pool's cores."""

from __future__ import annotations

import os
import threading
import time

import pytest

from xlatent.core.parallel import Pool, ordered_map


def where(i: int, pause: float = 0.0) -> tuple[int, int]:
    """Task: its index and the process that ran it (a pause keeps the workers busy)."""
    time.sleep(pause)
    return i, os.getpid()


def fails_at(i: int, bad: int) -> int:
    if i == bad:
        raise ValueError(f"task {i} failed")
    return i


def test_results_come_in_order_from_the_workers_and_this_process() -> None:
    """--workers 2 is one worker process and this one: each runs tasks, in task order."""
    with Pool(2) as pool:
        assert pool.processes == 1
        pool.wait_ready()
        got = list(ordered_map(where, [(i, 0.05) for i in range(24)], pool=pool))
    assert [i for i, _ in got] == list(range(24))
    pids = {pid for _, pid in got}
    assert os.getpid() in pids and len(pids) == 2  # the driver helped; the worker worked


#: Set by the first task run in this process; the workers' start waits for it below.
_STARTED_HERE = threading.Event()


def opens_the_pool(i: int) -> tuple[int, int]:
    _STARTED_HERE.set()
    return where(i)


def test_this_process_works_while_the_workers_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks given before the workers are up run here rather than wait for them (the
    workers here cannot be up before this process has run a task)."""
    from xlatent.core import local_pool

    start = local_pool.LocalProcesses._start

    def late_start(self: local_pool.LocalProcesses) -> None:
        assert _STARTED_HERE.wait(timeout=120)
        start(self)

    _STARTED_HERE.clear()
    monkeypatch.setattr(local_pool.LocalProcesses, "_start", late_start)
    got = list(ordered_map(opens_the_pool, [(i,) for i in range(6)], workers=2))
    assert [i for i, _ in got] == list(range(6))
    assert got[0][1] == os.getpid()


@pytest.mark.parametrize("bad", [0, 5, 11])
def test_a_failing_task_raises_in_its_turn(bad: int) -> None:
    seen: list[int] = []
    with pytest.raises(ValueError, match=f"task {bad} failed"):
        for r in ordered_map(fails_at, [(i, bad) for i in range(12)], workers=2):
            seen.append(r)
    assert seen == list(range(bad))


def test_first_runs_before_any_result_and_its_error_comes_first() -> None:
    calls: list[str] = []

    def check() -> None:
        calls.append("first")
        raise RuntimeError("damaged input")

    for workers in (1, 2):
        calls.clear()
        with pytest.raises(RuntimeError, match="damaged input"):
            for _ in ordered_map(fails_at, [(i, 0) for i in range(8)], workers, first=check):
                calls.append("result")
        assert calls == ["first"]


def started(i: int) -> tuple[int, int, float]:
    """Task: its index, the process and the time it started."""
    return i, os.getpid(), time.time()


def test_workers_get_tasks_the_moment_they_are_up_while_first_runs() -> None:
    """A long input check here (``first``) starts at once and does not hold the workers
    back: the thread that started them feeds them as soon as they are up."""
    with Pool(2, None, (__name__,)) as pool:
        fed: list = []
        pool.when_ready(lambda: fed.append(pool.submit(started, 0)))
        pool.wait_ready()
        assert len(fed) == 1 and fed[0].result()[1] != os.getpid()
        now: list[int] = []
        pool.when_ready(lambda: now.append(1))  # up already: called at once
        assert now == [1]
    marks: dict[str, float] = {}
    pool = Pool(2, None, (__name__,))

    def slow_check() -> None:
        marks["ready_at_start"] = pool.ready()
        time.sleep(3.0)  # the workers start in ~1 s
        marks["end"] = time.time()

    try:
        out = list(ordered_map(started, [(i,) for i in range(6)], pool=pool, first=slow_check))
    finally:
        pool.close()
    assert [o[0] for o in out] == list(range(6))
    assert not marks["ready_at_start"]  # first() did not wait for the workers
    assert any(pid != os.getpid() and t < marks["end"] for _, pid, t in out)


def test_abort_stops_the_workers_at_once() -> None:
    """Ctrl-C (or any error) in the driver: the worker processes are terminated, not waited
    for."""
    pool = Pool(2)
    pool.wait_ready()
    busy = pool.submit(where, 0, 600.0)
    procs = list(pool._impl._executor._processes.values())
    pool.close(abort=True)
    assert procs and not any(p.is_alive() for p in procs)
    assert busy.done()


def test_a_dask_scheduler_runs_the_tasks() -> None:
    """--scheduler ADDRESS: the tasks go to that Dask cluster (here one in this process)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        with Pool(1, cluster.scheduler_address) as pool:
            assert not pool.local
            got = list(ordered_map(fails_at, [(i, -1) for i in range(10)], pool=pool))
        assert got == list(range(10))
        got = list(ordered_map(fails_at, [(i, -1) for i in range(5)],
                               scheduler=cluster.scheduler_address))  # fmt: skip
        assert got == list(range(5))
