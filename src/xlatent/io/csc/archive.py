"""The batch archive: bounded reading, member checks, verified installation of detections.

An answer of the retrieval interface is a tar archive (plain, gzip, bzip2 or xz). It is read
through a bound (``max_archive_bytes`` of decompressed content, no single tar record over
16 MiB, at most ``64 + 16 * detections`` members). Members are refused one by one: unsafe
paths (``..``, absolute), links, devices, FIFOs, names that are not CSC product names,
oversized members. Nothing is ever written outside the directory; a refused member fails its
detection (when it names one) and is listed in the report. A detection's three files are
verified, then installed together (temp file + ``os.replace``, the PHA last).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from xlatent.io.csc.products import PRODUCTS, Detection, parse_product, parse_product_name
from xlatent.io.csc.query import TransientError, _reason
from xlatent.io.csc.verify import CorruptFileError, verify_fits

#: Temporary files (archives and staged members) are ``<dir>/.csc-*.part``.
TEMP_PREFIX, TEMP_SUFFIX = ".csc-", ".part"
#: Largest single read of an archive's (decompressed) tar stream: bounds pax/GNU long headers.
_MAX_RECORD = 16 * 1024**2
# mkstemp files are owner-only; installed files get the usual umask mode.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class ArchiveRefused(Exception):
    """An answer that will not be read: too large, too many members, oversized records."""


@dataclass
class BatchResult:
    """What one batch archive gave: detections installed, failed (reason), members refused."""

    done: list[Detection] = field(default_factory=list)
    failed: dict[Detection, str] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)


class _BoundedReader:
    """A tar stream's file object that refuses to go past ``limit`` bytes and refuses any
    single read larger than ``_MAX_RECORD`` (tarfile reads pax/GNU long headers whole)."""

    def __init__(self, f: Any, limit: int) -> None:
        self._f = f
        self._limit = limit

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > _MAX_RECORD:
            raise ArchiveRefused(f"a tar record larger than {_MAX_RECORD} B")
        data = self._f.read(n)
        if self._f.tell() > self._limit:
            raise ArchiveRefused(f"decompressed archive larger than {self._limit} B")
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self._f.tell() + offset if whence == 1 else None
        if target is not None and target > self._limit:
            raise ArchiveRefused(f"decompressed archive larger than {self._limit} B")
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def seekable(self) -> bool:
        return True


@contextlib.contextmanager
def _open_tar(path: Path, limit: int) -> Iterator[tarfile.TarFile]:
    """The tar archive at ``path`` (plain, gzip, bzip2 or xz), read through a bound."""
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb"))
        magic = raw.read(6)
        raw.seek(0)
        f: Any = raw
        if magic[:2] == b"\x1f\x8b":
            f = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif magic[:3] == b"BZh":
            f = stack.enter_context(bz2.BZ2File(raw))
        elif magic == b"\xfd7zXZ\x00":
            f = stack.enter_context(lzma.LZMAFile(raw))
        yield stack.enter_context(tarfile.open(fileobj=_BoundedReader(f, limit), mode="r:"))


def _max_members(n_detections: int) -> int:
    return 64 + 16 * n_detections


def check_archive(
    path: Path,
    n_detections: int,
    max_archive_bytes: int,
    max_member_bytes: int,
    check: Callable[[], None],
) -> None:
    """Read every member of the tar once: truncation is transient, non-tar is not.

    ``check`` is called between reads (it raises to stop, e.g. when the run is cancelled).
    """
    size = path.stat().st_size
    if size == 0:
        raise TransientError("empty answer")
    with open(path, "rb") as fh:
        head = fh.read(512)
    looks_like_tar = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or (
        len(head) >= 262 and head[257:262] == b"ustar"
    )
    try:
        with _open_tar(path, max_archive_bytes) as tar:
            for i, member in enumerate(tar, 1):
                check()
                if i > _max_members(n_detections):
                    raise ArchiveRefused(f"more than {_max_members(n_detections)} members")
                if _readable_member(member, max_member_bytes):
                    f = tar.extractfile(member)
                    if f is not None:
                        while f.read(1 << 20):
                            check()
    except ArchiveRefused:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        if looks_like_tar:
            raise TransientError(f"truncated archive ({_reason(exc)})") from None
        text = " ".join(head[:160].decode("utf-8", "replace").split())
        raise RuntimeError(f"answer is not a tar archive: {text!r}") from None


def _readable_member(member: tarfile.TarInfo, max_bytes: int) -> bool:
    return member.isreg() and not member.issparse() and member.size <= max_bytes


def member_problem(member: tarfile.TarInfo, max_bytes: int) -> str | None:
    """Why an archive member is refused, or None when it may be installed."""
    name = member.name
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in windows.parts:
        return "unsafe path (absolute or with '..')"
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO"
    if member.issparse():
        return "sparse file"
    if not member.isreg():
        return f"unsupported member type {member.type!r}"
    if parse_product_name(posix.name) is None:
        return "not a CSC product file name"
    if member.size > max_bytes:
        return f"{member.size} B, larger than the cap of {max_bytes} B per member"
    return None


def _printable(name: str) -> str:
    text = ascii(name)[1:-1]
    return text if len(text) <= 200 else text[:197] + "..."


def install(
    archive: Path,
    batch: list[Detection],
    directory: Path,
    max_archive_bytes: int,
    max_member_bytes: int,
    check: Callable[[], None],
) -> BatchResult:
    """Verify each member; install a detection's files only when all three are good.

    Products are grouped by cycle (``""``, or ``e1``/``e2`` for interleaved mode); a cycle is
    complete with one PHA, ARF and RMF, whatever their processing versions (of two versions
    of one product, the higher is kept). Every complete cycle of a detection is installed.
    """
    wanted = set(batch)
    staged: dict[Detection, dict[tuple[str, str], tuple[int, Path]]] = {}
    result = BatchResult()
    failed = result.failed
    targets: dict[Path, Path] = {}
    try:
        with _open_tar(archive, max_archive_bytes) as tar:
            for member in tar:
                check()
                if member.isdir():  # never created; harmless whatever its name
                    continue
                parsed = parse_product(PurePosixPath(member.name).name)
                det = parsed.detection if parsed is not None else None
                det = det if det in wanted else None
                problem = member_problem(member, max_member_bytes)
                if problem is None and det is None:
                    problem = "not a requested detection"
                if problem is not None:
                    if det is None:
                        result.refused.append((_printable(member.name), problem))
                    elif det not in failed:
                        failed[det] = f"{_printable(member.name)}: refused ({problem})"
                    continue
                assert det is not None and parsed is not None
                if det in failed:
                    continue
                name = PurePosixPath(member.name).name
                fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
                tmp_path = Path(tmp)
                targets[tmp_path] = directory / name
                src = tar.extractfile(member)
                with os.fdopen(fd, "wb") as out, contextlib.closing(src or io.BytesIO()) as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                try:
                    verify_fits(tmp_path, max_member_bytes)
                except CorruptFileError as exc:
                    failed[det] = f"{name}: {exc}"
                    tmp_path.unlink()
                    continue
                slot = (parsed.cycle, parsed.product)
                old = staged.setdefault(det, {}).get(slot)
                if old is not None:  # two versions in one archive: keep the higher one
                    if (old[0], targets[old[1]].name) > (parsed.version, name):
                        tmp_path.unlink()
                        continue
                    old[1].unlink()
                os.chmod(tmp_path, _FILE_MODE)
                staged[det][slot] = (parsed.version, tmp_path)
        for det in batch:
            check()
            if det not in failed:
                _install_detection(det, staged.get(det, {}), targets, result)
        return result
    finally:
        for tmp_path in targets:
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def _install_detection(
    det: Detection,
    staged: dict[tuple[str, str], tuple[int, Path]],
    targets: dict[Path, Path],
    result: BatchResult,
) -> None:
    """Install every complete cycle of ``det`` (ARF, RMF, then the PHA that names them)."""
    cycles = sorted({cycle for cycle, _ in staged})
    complete = [c for c in cycles if all((c, p) in staged for p in PRODUCTS)]
    if not complete:
        have = {p for _, p in staged}
        missing = [PRODUCTS[p] for p in PRODUCTS if p not in have] or ["a complete set"]
        result.failed[det] = f"not in the archive: {', '.join(missing)}"
        return
    files = [staged[(c, p)][1] for c in complete for p in PRODUCTS]
    blocked = [targets[f].name for f in files if _is_dir(targets[f])]
    if blocked:
        result.failed[det] = f"a directory is in the way: {', '.join(blocked)}"
        return
    for f in files:
        try:
            os.replace(f, targets[f])
        except OSError as exc:
            result.failed[det] = f"cannot install {targets[f].name}: {_reason(exc)}"
            return
    result.done.append(det)


def _is_dir(path: Path) -> bool:
    """A real directory (not a link to one: os.replace replaces a link itself)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


__all__ = [
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "ArchiveRefused",
    "BatchResult",
    "check_archive",
    "install",
    "member_problem",
]
