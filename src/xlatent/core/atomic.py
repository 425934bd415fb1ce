"""Atomic file output: write to a temporary file beside the target, then rename.

Temporary files are named ``.<target name>.<host>.<pid>.<random>.tmp``, so an orphan left by a
killed writer can be recognised: :func:`atomic_path` removes orphans of the same target whose
writer process (on this host) no longer exists, and never those of a live process or of
another host. Orphans of the older ``.<target name>.<random>.tmp`` form (no writer recorded)
are removed only once they are more than a day old.

:func:`deferred_interrupt` turns Ctrl-C during a long write into a ``KeyboardInterrupt`` at
the next checkpoint of the writer's own code: raised inside a C library's callbacks (h5py
object deallocation, for one) the exception is otherwise printed as "Exception ignored" and
lost, and the write runs on to the end as if nothing had happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# New files should get the usual umask mode.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK

#: Orphans without a recorded writer (older temp-name form) older than this are removed.
LEGACY_ORPHAN_AGE_S = 24 * 3600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def temp_name(target: Path, pid: int | None = None) -> str:
    """The name of a new temporary file for ``target`` (in the same directory)."""
    pid = os.getpid() if pid is None else pid
    return f".{target.name}.{_host()}.{pid}.{secrets.token_hex(4)}.tmp"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a real writer id: never treat as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove orphaned temporary files of ``target`` whose writer is gone; return them.

    A temp file is removed when its name records this host and a process id that no longer
    exists, or when it has the older name form (no writer recorded) and is more than
    :data:`LEGACY_ORPHAN_AGE_S` old. Temp files of live processes and of other hosts stay.
    """
    target = Path(target)
    name = re.escape(target.name)
    ours = re.compile(rf"^\.{name}\.([A-Za-z0-9-]+)\.(\d+)\.[0-9a-f]{{8}}\.tmp$")
    legacy = re.compile(rf"^\.{name}\.[A-Za-z0-9_]{{8}}\.tmp$")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    host, now = _host(), time.time()
    for entry in entries:
        m = ours.match(entry.name)
        if m is not None:
            stale = m.group(1) == host and not _pid_alive(int(m.group(2)))
        elif legacy.match(entry.name) is not None:
            try:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_ORPHAN_AGE_S
            except OSError:
                stale = False
        else:
            continue
        if stale and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename onto ``path`` on success.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed, ``path``
    is left untouched and the exception propagates, so a crashed or interrupted run never
    leaves a half-written output behind. Stale temporary files of the same target left by
    writers that were killed outright are removed first (see :func:`remove_stale_temps`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp_path = target.parent / temp_name(target)
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], None]]:
    """Defer Ctrl-C (SIGINT) to checkpoints; yields ``check()``, which raises it.

    While active, a first SIGINT only sets a flag; ``check()`` (call it between blocks of
    work) then raises ``KeyboardInterrupt`` from the caller's own code, where nothing can
    swallow it. A second SIGINT raises at once. On leaving, the previous handler is restored
    and a pending interrupt is raised. Outside the main thread, or when SIGINT is not handled
    by Python's default handler (ignored, or a custom handler), nothing changes and ``check``
    does nothing. Nested inside another ``deferred_interrupt`` it shares the outer one's flag
    (its ``check`` raises a pending interrupt; the outer block restores the handler).
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    current = signal.getsignal(signal.SIGINT)
    outer_check = getattr(current, "xlatent_check", None)
    if outer_check is not None:  # nested: the outer block's flag and checkpoints serve
        yield outer_check
        return
    if current is not signal.default_int_handler:
        yield lambda: None
        return
    pending = [False]

    def handler(signum: int, frame: Any) -> None:
        if pending[0]:
            raise KeyboardInterrupt
        pending[0] = True

    def check() -> None:
        if pending[0]:
            pending[0] = False
            raise KeyboardInterrupt

    handler.xlatent_check = check  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, handler)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    check()
