"""Atomic writes: recognisable temp names, stale-orphan cleanup, Ctrl-C during a write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xlatent.core.atomic as atomic
import xlatent.core.hdf5_layout as ssmod
from xlatent.core import EnergyGrid, SpectrumSet, atomic_path, atomic_write_text
from xlatent.core.hdf5_write import SpectrumSetWriter

SRC = Path(ssmod.__file__).resolve().parents[2]


def small_set(n: int = 4) -> SpectrumSet:
    g = EnergyGrid.default()
    m = g.n_bins
    return SpectrumSet(g, np.ones((n, m)), np.zeros((n, m)), np.full(n, 1e4),
                       np.full((n, m), 100.0), pd.DataFrame({"x": np.arange(n)}))  # fmt: skip


def assert_interrupted_write_leaves_target(tmp_path: Path) -> None:
    """Writing a set over an existing file raises KeyboardInterrupt, and leaves the file as it
    was and no temp file."""
    target = tmp_path / "set.h5"
    target.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        small_set().write(target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.h5"]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_name_records_host_and_pid(tmp_path) -> None:
    seen = []
    with atomic_path(tmp_path / "out.txt") as tmp:
        seen.append(tmp.name)
        tmp.write_text("x")
    host = atomic._host()
    assert seen[0].startswith(f".out.txt.{host}.{os.getpid()}.") and seen[0].endswith(".tmp")
    assert (tmp_path / "out.txt").read_text() == "x"


def test_stale_orphans_of_dead_writers_are_removed_and_live_ones_kept(tmp_path) -> None:
    target = tmp_path / "set.h5"
    host = atomic._host()
    dead = tmp_path / f".set.h5.{host}.{dead_pid()}.0badc0de.tmp"
    live = tmp_path / f".set.h5.{host}.{os.getppid()}.0123abcd.tmp"
    mine = tmp_path / f".set.h5.{host}.{os.getpid()}.89abcdef.tmp"
    remote = tmp_path / f".set.h5.some-other-host.{dead_pid()}.0badc0de.tmp"
    other_target = tmp_path / f".other.h5.{host}.{dead_pid()}.0badc0de.tmp"
    legacy_old = tmp_path / ".set.h5.ab_cd123.tmp"
    legacy_new = tmp_path / ".set.h5.xy_zw456.tmp"
    for p in (dead, live, mine, remote, other_target, legacy_old, legacy_new):
        p.write_text("partial")
    old = time.time() - 2 * atomic.LEGACY_ORPHAN_AGE_S
    os.utime(legacy_old, (old, old))
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not dead.exists() and not legacy_old.exists()
    for kept in (live, mine, remote, other_target, legacy_new):
        assert kept.exists(), kept.name


def test_keyboard_interrupt_inside_write_removes_temp_and_keeps_target(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(SpectrumSetWriter, "_append_column", interrupted)
    assert_interrupted_write_leaves_target(tmp_path)


def test_sigint_during_write_stops_it(tmp_path, monkeypatch) -> None:
    """A real SIGINT to this process mid-write (from inside h5py work) stops the write."""
    original = SpectrumSetWriter._append_column
    sent = []

    def column_then_sigint(*args, **kwargs):
        original(*args, **kwargs)
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(SpectrumSetWriter, "_append_column", column_then_sigint)
    assert_interrupted_write_leaves_target(tmp_path)
    assert sent


def test_sigint_lost_in_a_callback_while_values_are_checked_still_stops_the_write(
    tmp_path, monkeypatch
) -> None:
    """CI caught a SIGINT landing after the temp file existed but before the first deferred
    step (the writer was checking values): raised inside a C-level callback such as h5py's
    object deallocation it is printed and lost, and the write completed. A ``__del__``
    reproduces the callback deterministically."""
    import xlatent.core.hdf5_write as hw

    original = hw._values_problem

    class SigintOnDel:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)

    def check_then_sigint(*args, **kwargs):
        SigintOnDel()  # dropped at once: KeyboardInterrupt raised in __del__ is swallowed
        return original(*args, **kwargs)

    monkeypatch.setattr(hw, "_values_problem", check_then_sigint)
    assert_interrupted_write_leaves_target(tmp_path)


def test_nested_deferred_interrupt_shares_the_outer_flag() -> None:
    with pytest.raises(KeyboardInterrupt), atomic.deferred_interrupt() as outer:
        with atomic.deferred_interrupt() as inner:
            assert inner is outer
            os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(KeyboardInterrupt):
                inner()
            os.kill(os.getpid(), signal.SIGINT)  # pending again: raised when the outer ends
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_stops_a_large_write_in_a_subprocess(tmp_path) -> None:
    """Without the deferred handler, SIGINT lands in an h5py weakref callback, is printed as
    'Exception ignored' and the write completes with exit status 0."""
    target = tmp_path / "big.h5"
    target.write_bytes(b"previous")
    script = textwrap.dedent(f"""
        import numpy as np, pandas as pd
        from xlatent.core import EnergyGrid, SpectrumSet
        n = 30000; g = EnergyGrid.default(); m = g.n_bins
        rng = np.random.default_rng(0)
        s = SpectrumSet(g, rng.poisson(3.0, (n, m)).astype(float), rng.random((n, m)),
                        np.full(n, 1e4), rng.random((n, m)), pd.DataFrame({{"x": rng.random(n)}}))
        s.write({str(target)!r})
        print("finished")
    """)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "no temp file appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "finished" not in out
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.h5"]


def test_deferred_interrupt_is_inert_outside_main_thread() -> None:
    import threading

    result = []

    def worker() -> None:
        with atomic.deferred_interrupt() as check:
            check()
            result.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert result == [signal.default_int_handler]
