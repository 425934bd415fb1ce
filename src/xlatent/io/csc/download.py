"""Download per-detection CSC spectra (PHA, ARF, RMF) through the CSC retrieval interface.

Detections are requested in batches (one HTTP request per batch, ``packageset`` entries
``OBSID.OBI.REGION/<filetype>/<band>``) and each answer is a tar archive holding the CSC
per-detection files, named as the archive names them (``acisf01575_001N001_r0085_pha3.fits.gz``).

Robustness:

* every FITS file is verified (opens, all data readable, CHECKSUM/DATASUM when present) and
  a detection's three files are installed together (temp file + ``os.replace``, the PHA last),
  so a file in the directory is always a verified one and a corrupt member is never kept;
* detections whose three files are already present are skipped (resume); anything in the
  directory that is not a readable regular FITS file (a dangling link, a directory, a FIFO,
  an unreadable or empty file) counts as absent;
* each request has a total deadline, ``timeout_s`` for connect, headers and the whole body
  (a server that drips bytes cannot hold a transfer longer);
* an answer is read up to ``max_archive_bytes`` (also the bound of a compressed archive's
  decompressed content) and each member up to ``max_member_bytes`` (stored and, for a gzip
  member, decompressed), so a decompression bomb costs bounded memory and time;
* archive members are refused one by one: unsafe paths (``..``, absolute), links, devices,
  FIFOs, names that are not CSC product names, oversized members. Nothing is ever written
  outside the directory; a refused member fails its detection (when it names one) and is
  listed in the report, the archive's other detections are still installed;
* timeouts, HTTP 408/429/5xx, dropped connections and truncated archives are retried with
  exponential backoff; any other failure is reported per detection, never fatal for the run;
* Ctrl-C (KeyboardInterrupt) aborts the transfers in flight, removes the temporary files,
  writes the report of what completed and re-raises;
* a JSON report of what was downloaded, skipped and failed is written into the directory.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import os
import re
import socket
import stat
import tarfile
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TypeVar

import pandas as pd
import requests
import urllib3
from requests.adapters import HTTPAdapter

from xlatent.core.atomic import atomic_write_text
from xlatent.io.csc.query import TransientError, _reason, is_transient

#: The CSC command-line retrieval interface for packages of files (answers with a tar file).
DEFAULT_RETRIEVE_URL = "https://cda.cfa.harvard.edu/csccli/retrievePackage"
RETRIEVE_URL_ENV = "XLATENT_CSC_RETRIEVE_URL"
#: Catalogue release as the retrieval interface names it.
DEFAULT_VERSION = "rel2.1"
REPORT_NAME = "csc_download_report.json"
#: Largest answer (one batch archive) read, bytes; also bounds its decompressed content.
DEFAULT_MAX_ARCHIVE_BYTES = 2 * 1024**3
#: Largest archive member, bytes, as stored and (gzip members) decompressed.
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024**2

#: CSC file-name product code -> retrieval ``filetype``. The PHA comes last on purpose.
PRODUCTS: dict[str, str] = {"arf3": "arf", "rmf3": "rmf", "pha3": "spectrum"}

_CSC_FILE = re.compile(
    r"^(?:acis|hrc)f(\d{5})_(\d{3})N(\d{3})_r(\d{4})_(pha3|arf3|rmf3)\.fits(?:\.gz)?$",
    re.IGNORECASE,
)
_CHUNK = 1 << 16
#: Largest single read of an archive's (decompressed) tar stream: bounds pax/GNU long headers.
_MAX_RECORD = 16 * 1024**2
#: Temporary files of this module: archives and staged members, and the report's temp file.
_TEMP_GLOBS = (".csc-*.part", f".{REPORT_NAME}.*.tmp")
# mkstemp files are owner-only; installed files get the usual umask mode.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK
T = TypeVar("T")


@dataclass(frozen=True, order=True)
class Detection:
    """One per-observation CSC detection: the key of its spectrum, ARF and RMF."""

    obsid: int
    obi: int
    region_id: int

    def __str__(self) -> str:
        return f"{self.obsid}.{self.obi}.{self.region_id}"

    def packageset(self, band: str = "") -> list[str]:
        """The retrieval ``packageset`` entries for the PHA, ARF and RMF of this detection."""
        return [f"{self}/{filetype}/{band}" for filetype in PRODUCTS.values()]

    def glob(self, product: str) -> str:
        """File-name pattern of one product (any instrument prefix, processing version)."""
        return f"*f{self.obsid:05d}_{self.obi:03d}N*_r{self.region_id:04d}_{product}.fits*"


def parse_product_name(name: str) -> tuple[Detection, str] | None:
    """(detection, product code) from a CSC per-detection file name, else None."""
    m = _CSC_FILE.match(Path(name).name)
    if not m:
        return None
    det = Detection(int(m.group(1)), int(m.group(2)), int(m.group(4)))
    return det, m.group(5).lower()


def detections_from_catalog(catalog: pd.DataFrame) -> list[Detection]:
    """Unique detections (sorted) of a catalogue with ``obsid``, ``obi``, ``region_id``."""
    keys = catalog[["obsid", "obi", "region_id"]].astype("int64").drop_duplicates()
    keys = keys[(keys >= 0).all(axis=1)]
    return sorted(Detection(int(a), int(b), int(c)) for a, b, c in keys.itertuples(index=False))


def _usable(path: Path) -> bool:
    """Whether ``path`` is (or links to) a readable, non-empty regular file that starts like
    a FITS or gzip file. Never blocks (a FIFO is opened non-blocking and refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return False
        head = os.read(fd, 6)
    except OSError:
        return False
    finally:
        os.close(fd)
    return head == b"SIMPLE" or head[:2] == b"\x1f\x8b"


def complete_files(directory: Path, det: Detection) -> dict[str, Path] | None:
    """The detection's three files in ``directory`` when all are present, else None.

    Only readable regular files that start like FITS (or gzip) count; junk named like a
    product (a dangling link, a directory, a FIFO, an empty or unreadable file) is ignored.
    """
    found = {}
    for product in PRODUCTS:
        hits = sorted(p for p in Path(directory).glob(det.glob(product)) if _usable(p))
        if not hits:
            return None
        found[product] = hits[-1]  # highest processing version
    return found


def _complete_in(directory: Path, wanted: set[Detection]) -> set[Detection]:
    """The detections of ``wanted`` whose three files are usable (one scan of the directory)."""
    have: dict[Detection, set[str]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = parse_product_name(entry.name)
            if parsed is None or parsed[0] not in wanted or parsed[1] in have.get(parsed[0], ()):
                continue
            if _usable(Path(entry.path)):
                have.setdefault(parsed[0], set()).add(parsed[1])
    return {det for det, products in have.items() if len(products) == len(PRODUCTS)}


def retrieve_url(url: str | None = None) -> str:
    """``url``, else ``$XLATENT_CSC_RETRIEVE_URL``, else the public CSC retrieval interface."""
    return url or os.environ.get(RETRIEVE_URL_ENV) or DEFAULT_RETRIEVE_URL


# ---------------------------------------------------------------------------- verification
class CorruptFileError(Exception):
    """A FITS file that does not open or whose data or checksums are bad."""


class _TooLarge(CorruptFileError):
    """A file over the size bound (stored or decompressed): refused, not read further."""


def verify_fits(path: Path, max_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` is a complete, readable FITS file.

    Every HDU's data must be readable, and DATASUM and CHECKSUM must match where an HDU has
    them (a blank keyword counts as absent, as in CSC primary headers). The sums are taken
    over the raw bytes (gzip-decompressed), which also covers variable-length heaps such as an
    RMF matrix, where astropy's own checksum verification disagrees with valid files.

    A file (stored, or gzip-decompressed) larger than ``max_bytes`` is refused without being
    read further: decompression is streamed and stops at the bound.
    """
    from astropy.io import fits

    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > max_bytes:
                raise _TooLarge(f"larger than the cap of {max_bytes} B")
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip_bounded(raw, max_bytes)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # astropy reports truncated files as warnings
            with fits.open(io.BytesIO(raw), memmap=False) as hdul:
                if len(hdul) == 0:
                    raise CorruptFileError("no HDUs")
                for i, hdu in enumerate(hdul):
                    _ = hdu.data
                    info = hdul.fileinfo(i)
                    start, span = info["datLoc"], info["datSpan"]
                    if start + span > len(raw):
                        raise CorruptFileError(f"HDU {i} is truncated")
                    data_sum = _ones_complement_sum(raw[start : start + span])
                    datasum = str(hdu.header.get("DATASUM", "") or "").strip()
                    if datasum and int(datasum) != data_sum:
                        raise CorruptFileError(f"DATASUM mismatch in HDU {i}")
                    if str(hdu.header.get("CHECKSUM", "") or "").strip():
                        header_sum = _ones_complement_sum(raw[info["hdrLoc"] : start])
                        if _fold(header_sum + data_sum) != 0xFFFFFFFF:
                            raise CorruptFileError(f"CHECKSUM mismatch in HDU {i}")
    except _TooLarge:
        raise
    except CorruptFileError as exc:
        raise CorruptFileError(f"corrupt FITS ({exc})") from None
    except Exception as exc:
        raise CorruptFileError(f"corrupt FITS ({_reason(exc)})") from None


def _gunzip_bounded(data: bytes, max_bytes: int) -> bytes:
    """Decompress a (possibly multi-member) gzip stream; refuse output beyond ``max_bytes``."""
    out = bytearray()
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while data:
            room = max_bytes - len(out)
            out += d.decompress(data, room + 1)
            if len(out) > max_bytes:
                raise _TooLarge(f"decompresses to more than the cap of {max_bytes} B")
            data = d.unconsumed_tail
            if d.eof:
                break
        if not d.eof:
            raise CorruptFileError("truncated gzip stream")
        data = d.unused_data.lstrip(b"\x00")  # gzip allows zero padding between members
    return bytes(out)


def _fold(total: int) -> int:
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _ones_complement_sum(block: bytes) -> int:
    """The FITS 32-bit ones' complement sum of ``block`` (a whole number of 2880-byte blocks)."""
    import numpy as np

    usable = len(block) - len(block) % 4
    words = np.frombuffer(block[:usable], dtype=">u4").astype(np.uint64)
    return _fold(int(words.sum()))


# -------------------------------------------------------------------------------- report
@dataclass
class DownloadReport:
    """What a download run did: per detection, downloaded, already there, or failed.

    ``refused_members`` lists archive members that name no requested detection and were
    refused (not a CSC product name, unsafe path, link, ...): (member name, reason).
    ``interrupted`` is True when the run was stopped (Ctrl-C) before it finished; the
    detections it did not complete are then failed with the reason ``interrupted``.
    """

    directory: str
    url: str
    requested: int = 0
    already_complete: list[Detection] = field(default_factory=list)
    downloaded: list[Detection] = field(default_factory=list)
    failed: dict[Detection, str] = field(default_factory=dict)
    refused_members: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def n_complete(self) -> int:
        return len(self.already_complete) + len(self.downloaded)

    @property
    def nothing_downloaded(self) -> bool:
        """True when detections were requested and not one is available afterwards."""
        return self.requested > 0 and self.n_complete == 0

    def to_dict(self) -> dict[str, Any]:
        def ids(dets: Iterable[Detection]) -> list[dict[str, int]]:
            return [{"obsid": d.obsid, "obi": d.obi, "region_id": d.region_id} for d in dets]

        return {
            "directory": self.directory,
            "url": self.url,
            "requested": self.requested,
            "n_downloaded": len(self.downloaded),
            "n_already_complete": len(self.already_complete),
            "n_failed": len(self.failed),
            "n_refused_members": len(self.refused_members),
            "retries": self.retries,
            "elapsed_s": round(self.elapsed_s, 3),
            "interrupted": self.interrupted,
            "downloaded": ids(sorted(self.downloaded)),
            "already_complete": ids(sorted(self.already_complete)),
            "failed": [
                {**ids([d])[0], "reason": reason} for d, reason in sorted(self.failed.items())
            ],
            "refused_members": [{"member": m, "reason": why} for m, why in self.refused_members],
        }

    def summary(self) -> str:
        """A short human-readable account, one line per failure and refused member."""
        lines = [
            f"{self.requested} detections: {len(self.downloaded)} downloaded, "
            f"{len(self.already_complete)} already complete, {len(self.failed)} failed"
            + (" (interrupted)" if self.interrupted else "")
        ]
        lines += [f"  failed {d}: {why}" for d, why in sorted(self.failed.items())]
        lines += [f"  refused member {m}: {why}" for m, why in self.refused_members]
        return "\n".join(lines)


# ---------------------------------------------------------------------- aborting transfers
class DeadlineExceeded(TransientError):
    """A request did not complete (connect, headers and body) within its deadline."""


class ArchiveRefused(Exception):
    """An answer that will not be read: too large, too many members, oversized records."""


class _Interrupted(Exception):
    """The run is being stopped (Ctrl-C); raised in the workers."""

    def __init__(self) -> None:
        super().__init__("interrupted")


_DEADLINE, _INTERRUPT = "deadline", "interrupt"
_local = threading.local()


class _Transfer:
    """One HTTP exchange that another thread can abort by shutting down its sockets, which
    wakes a read blocked in the transfer's thread at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.aborted: str | None = None
        self.received = 0

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.aborted is None:
                return
        _shutdown(sock)

    def abort(self, why: str) -> None:
        with self._lock:
            if self.aborted is None:
                self.aborted = why
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also on an SSL socket (no TLS close exchange, no wait);
    # a closed or detached socket has no descriptor any more: nothing to do.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watch(sock: socket.socket) -> None:
    transfer = getattr(_local, "transfer", None)
    if transfer is not None:
        transfer.attach(sock)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # the TCP socket: covers the TLS handshake
        return sock

    def connect(self) -> None:
        super().connect()
        _watch(self.sock)  # the TLS socket that replaced it


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections register their sockets with the current transfer."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if type(manager) is urllib3.ProxyManager:  # not SOCKS: its own pool classes
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class _Run:
    """State shared by a run's workers: the cancel flag and the transfers in flight."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._active: set[_Transfer] = set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise _Interrupted

    @contextlib.contextmanager
    def transfer(self, timeout_s: float) -> Iterator[_Transfer]:
        """A transfer aborted at ``timeout_s`` from now, or when the run is cancelled."""
        t = _Transfer()
        with self._lock:
            self.check()
            self._active.add(t)
        timer = threading.Timer(timeout_s, t.abort, args=(_DEADLINE,))
        timer.daemon = True
        timer.start()
        _local.transfer = t
        try:
            yield t
        finally:
            _local.transfer = None
            timer.cancel()
            with self._lock:
                self._active.discard(t)

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            active = list(self._active)
        for t in active:
            t.abort(_INTERRUPT)


# ------------------------------------------------------------------------------ download
@dataclass
class _Options:
    url: str
    directory: Path
    version: str
    band: str
    timeout_s: float
    retries: int
    backoff_s: float
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    run: _Run = field(default_factory=_Run)


@dataclass
class _BatchResult:
    done: list[Detection] = field(default_factory=list)
    failed: dict[Detection, str] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)


def download_spectra(
    catalog: pd.DataFrame | Sequence[Detection],
    directory: str | Path,
    url: str | None = None,
    batch_size: int = 50,
    workers: int = 4,
    retries: int = 4,
    backoff_s: float = 2.0,
    timeout_s: float = 300.0,
    version: str = DEFAULT_VERSION,
    band: str = "",
    progress: bool = True,
    max_archive_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> DownloadReport:
    """Fetch the PHA, ARF and RMF of every detection into ``directory`` (flat, CSC names).

    ``catalog`` is a table with ``obsid``, ``obi``, ``region_id`` (e.g. from
    :func:`~xlatent.io.csc.query.read_catalog`) or a list of :class:`Detection`.
    ``timeout_s`` is the deadline of one request, connect and whole transfer included (a
    timed-out request is retried like any transient failure). An answer larger than
    ``max_archive_bytes`` fails its batch; a member larger than ``max_member_bytes``
    (stored or decompressed) fails its detection.
    Writes ``csc_download_report.json`` into ``directory`` and returns the report. A
    KeyboardInterrupt stops the transfers in flight, removes the temporary files, writes
    the report of what completed, and is re-raised.
    """
    if batch_size < 1 or workers < 1 or retries < 0 or backoff_s < 0 or not timeout_s > 0:
        raise ValueError("batch_size and workers must be >= 1, retries/backoff >= 0, timeout > 0")
    if max_archive_bytes < 1 or max_member_bytes < 1:
        raise ValueError("max_archive_bytes and max_member_bytes must be >= 1")
    t0 = time.monotonic()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dets = (
        detections_from_catalog(catalog)
        if isinstance(catalog, pd.DataFrame)
        else sorted(set(catalog))
    )
    opts = _Options(
        retrieve_url(url),
        directory,
        version,
        band,
        timeout_s,
        retries,
        backoff_s,
        max_archive_bytes,
        max_member_bytes,
    )
    report = DownloadReport(directory=str(directory), url=opts.url, requested=len(dets))
    complete = _complete_in(directory, set(dets))
    report.already_complete = [d for d in dets if d in complete]
    todo = [d for d in dets if d not in complete]
    _remove_stale_temp(directory)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    lock = threading.Lock()

    def count_retry(_attempt: int, _exc: BaseException) -> None:
        with lock:
            report.retries += 1

    def collect(result: _BatchResult) -> None:
        report.downloaded.extend(result.done)
        report.failed.update(result.failed)
        report.refused_members.extend(result.refused)

    bar = _progress_bar(len(dets), len(report.already_complete), progress)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csc-download")
    futures: dict[Future[_BatchResult], list[Detection]] = {}
    pending: set[Future[_BatchResult]] = set()
    try:
        futures = {pool.submit(_fetch_batch, b, opts, count_retry): b for b in batches}
        pending = set(futures)
        for fut in as_completed(futures):
            pending.discard(fut)
            collect(_result(fut, futures[fut]))
            if bar is not None:
                bar.update(len(futures[fut]))
    except BaseException:  # KeyboardInterrupt (or SystemExit): stop, keep what completed
        report.interrupted = True
        opts.run.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        for fut in pending:
            if not fut.cancelled():
                with contextlib.suppress(BaseException):  # its detections: "interrupted"
                    collect(_result(fut, futures[fut]))  # the workers stop at once
        raise
    finally:
        pool.shutdown(wait=True)
        if bar is not None:
            bar.close()
        if report.interrupted:
            finished = set(report.downloaded) | set(report.failed)
            for det in todo:
                if det not in finished:
                    report.failed[det] = "interrupted"
            _remove_stale_temp(directory)  # the workers remove their own; in case one hung
        report.elapsed_s = time.monotonic() - t0
        try:
            write_report(report)
        except OSError as exc:  # e.g. a directory in the way: the run's work still stands
            warnings.warn(f"could not write the download report: {_reason(exc)}", stacklevel=2)
    return report


def _result(fut: Future[_BatchResult], batch: list[Detection]) -> _BatchResult:
    try:
        return fut.result()
    except _Interrupted:
        return _BatchResult(failed=dict.fromkeys(batch, "interrupted"))
    except Exception as exc:  # a bug, not a network fault: report, keep going
        return _BatchResult(failed={d: f"internal error ({_reason(exc)})" for d in batch})


def write_report(report: DownloadReport) -> Path:
    """Write the JSON report into the download directory (atomically)."""
    path = Path(report.directory) / REPORT_NAME
    atomic_write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")
    return path


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="csc download", unit="det")


def _remove_stale_temp(directory: Path) -> None:
    """Temporary files left by an interrupted run (never a completed file): archives and
    staged members (``.csc-*.part``) and the report's temporary file."""
    for pattern in _TEMP_GLOBS:
        for p in directory.glob(pattern):
            with contextlib.suppress(OSError):
                if not p.is_dir() or p.is_symlink():
                    p.unlink()


def _fetch_batch(batch: list[Detection], opts: _Options, on_retry: Any) -> _BatchResult:
    """Download one batch archive (with retries) and install its verified detections."""
    try:
        try:
            archive = _with_retries(lambda: _request_archive(batch, opts), opts, on_retry)
        except _Interrupted:
            raise
        except Exception as exc:
            why = _reason(exc)
            if opts.retries and is_transient(exc):
                why += f" (after {opts.retries} retries)"
            return _BatchResult(failed=dict.fromkeys(batch, why))
        try:
            return _install(archive, batch, opts)
        finally:
            with contextlib.suppress(OSError):
                archive.unlink()
    except BaseException as exc:
        if not isinstance(exc, Exception):  # KeyboardInterrupt here: stop the other workers
            opts.run.cancel()
        raise


def _with_retries(func: Callable[[], T], opts: _Options, on_retry: Any) -> T:
    """``query.with_retries``, with waits that end when the run is cancelled."""
    attempt = 0
    while True:
        opts.run.check()
        try:
            return func()
        except Exception as exc:
            if attempt >= opts.retries or not is_transient(exc):
                raise
            attempt += 1
            on_retry(attempt, exc)
            opts.run.cancelled.wait(opts.backoff_s * 2 ** (attempt - 1))


def _request_archive(batch: list[Detection], opts: _Options) -> Path:
    """POST one batch request; stream the answer to a temp file; check it is a whole tar."""
    data = {
        "version": opts.version,
        "packageset": "+".join(e for d in batch for e in d.packageset(opts.band)),
    }
    fd, tmp = tempfile.mkstemp(prefix=".csc-", suffix=".part", dir=opts.directory)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh, opts.run.transfer(opts.timeout_s) as transfer:
            try:
                _stream(opts, data, fh, transfer)
            except (ArchiveRefused, _Interrupted):
                raise
            except Exception:
                if transfer.aborted is None:
                    raise
            if transfer.aborted == _INTERRUPT:
                raise _Interrupted
            if transfer.aborted == _DEADLINE:
                raise DeadlineExceeded(
                    f"no complete answer within {opts.timeout_s:g} s "
                    f"({transfer.received} B received)"
                ) from None
        _check_archive(path, opts, len(batch))
        return path
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _stream(opts: _Options, data: dict[str, str], fh: Any, transfer: _Transfer) -> None:
    deadline = time.monotonic() + opts.timeout_s
    cap = opts.max_archive_bytes
    headers = {"Accept-Encoding": "identity", "User-Agent": "xlatent-csc/1"}
    with requests.Session() as session:
        session.mount("http://", _WatchedAdapter())
        session.mount("https://", _WatchedAdapter())
        timeout = (opts.timeout_s, opts.timeout_s)
        with session.post(opts.url, data=data, headers=headers, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            length = (r.headers.get("Content-Length") or "").strip()
            expected = int(length) if length.isdigit() else None
            if expected is not None and expected > cap:
                raise ArchiveRefused(_too_large(f"announced {expected} B", cap))
            for chunk in r.iter_content(chunk_size=_CHUNK):
                transfer.received += len(chunk)
                if transfer.received > cap:
                    raise ArchiveRefused(_too_large(f"over {cap} B", cap))
                if time.monotonic() > deadline:
                    transfer.abort(_DEADLINE)
                    return
                opts.run.check()
                fh.write(chunk)
    if transfer.aborted is None and expected is not None and transfer.received < expected:
        raise TransientError(f"connection dropped after {transfer.received} of {expected} bytes")


def _too_large(what: str, cap: int) -> str:
    return f"answer too large ({what}; the cap is {cap} B per archive, use smaller batches)"


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


def _check_archive(path: Path, opts: _Options, n_detections: int) -> None:
    """Read every member of the tar once: truncation is transient, non-tar is not."""
    size = path.stat().st_size
    if size == 0:
        raise TransientError("empty answer")
    with open(path, "rb") as fh:
        head = fh.read(512)
    looks_like_tar = head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or (
        len(head) >= 262 and head[257:262] == b"ustar"
    )
    try:
        with _open_tar(path, opts.max_archive_bytes) as tar:
            for i, member in enumerate(tar, 1):
                opts.run.check()
                if i > _max_members(n_detections):
                    raise ArchiveRefused(f"more than {_max_members(n_detections)} members")
                if _readable_member(member, opts.max_member_bytes):
                    f = tar.extractfile(member)
                    if f is not None:
                        while f.read(1 << 20):
                            opts.run.check()
    except (ArchiveRefused, _Interrupted):
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        if looks_like_tar:
            raise TransientError(f"truncated archive ({_reason(exc)})") from None
        text = " ".join(head[:160].decode("utf-8", "replace").split())
        raise RuntimeError(f"answer is not a tar archive: {text!r}") from None


def _readable_member(member: tarfile.TarInfo, max_bytes: int) -> bool:
    return member.isreg() and not member.issparse() and member.size <= max_bytes


def _member_problem(member: tarfile.TarInfo, max_bytes: int) -> str | None:
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


def _install(archive: Path, batch: list[Detection], opts: _Options) -> _BatchResult:
    """Verify each member; install a detection's files only when all three are good."""
    directory = opts.directory
    wanted = set(batch)
    staged: dict[Detection, dict[str, Path]] = {}
    result = _BatchResult()
    failed = result.failed
    targets: dict[Path, Path] = {}
    try:
        with _open_tar(archive, opts.max_archive_bytes) as tar:
            for member in tar:
                opts.run.check()
                if member.isdir():  # never created; harmless whatever its name
                    continue
                parsed = parse_product_name(PurePosixPath(member.name).name)
                det = parsed[0] if parsed is not None and parsed[0] in wanted else None
                problem = _member_problem(member, opts.max_member_bytes)
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
                product = parsed[1]
                name = PurePosixPath(member.name).name
                fd, tmp = tempfile.mkstemp(prefix=".csc-", suffix=".part", dir=directory)
                tmp_path = Path(tmp)
                targets[tmp_path] = directory / name
                src = tar.extractfile(member)
                with os.fdopen(fd, "wb") as out, contextlib.closing(src or io.BytesIO()) as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                try:
                    verify_fits(tmp_path, opts.max_member_bytes)
                except CorruptFileError as exc:
                    failed[det] = f"{name}: {exc}"
                    tmp_path.unlink()
                    continue
                old = staged.setdefault(det, {}).get(product)
                if old is not None:  # two versions in one archive: keep the later name
                    if targets[old].name > name:
                        tmp_path.unlink()
                        continue
                    old.unlink()
                os.chmod(tmp_path, _FILE_MODE)
                staged[det][product] = tmp_path
        for det in batch:
            opts.run.check()
            if det in failed:
                continue
            files = staged.get(det, {})
            missing = [PRODUCTS[p] for p in PRODUCTS if p not in files]
            if missing:
                failed[det] = f"not in the archive: {', '.join(missing)}"
                continue
            blocked = [targets[files[p]].name for p in PRODUCTS if _is_dir(targets[files[p]])]
            if blocked:
                failed[det] = f"a directory is in the way: {', '.join(blocked)}"
                continue
            try:
                for product in PRODUCTS:  # ARF, RMF, then the PHA that names them
                    os.replace(files[product], targets[files[product]])
            except OSError as exc:
                failed[det] = f"cannot install {targets[files[product]].name}: {_reason(exc)}"
                continue
            result.done.append(det)
        return result
    finally:
        for tmp_path in targets:
            with contextlib.suppress(OSError):
                tmp_path.unlink()


def _is_dir(path: Path) -> bool:
    """A real directory (not a link to one: os.replace replaces a link itself)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


__all__ = [
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "DEFAULT_MAX_MEMBER_BYTES",
    "DEFAULT_RETRIEVE_URL",
    "DEFAULT_VERSION",
    "PRODUCTS",
    "REPORT_NAME",
    "RETRIEVE_URL_ENV",
    "ArchiveRefused",
    "CorruptFileError",
    "DeadlineExceeded",
    "Detection",
    "DownloadReport",
    "complete_files",
    "detections_from_catalog",
    "download_spectra",
    "parse_product_name",
    "retrieve_url",
    "verify_fits",
]
