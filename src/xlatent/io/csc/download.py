"""Download per-detection CSC spectra (PHA, ARF, RMF) through the CSC retrieval interface.

Detections are requested in batches, one HTTP GET per batch of the CSC batch retrieval
interface (``https://cda.cfa.harvard.edu/csccli/retrieve?version=rel2.1&packageset=...``),
``packageset`` holding ``,``-separated entries ``OBSID.OBI.REGION/<filetype>/<band>``
(``1575.1.85/spectrum/b,1575.1.85/arf/b,1575.1.85/rmf/b``). Each answer is a tar archive
holding the CSC per-detection files (in a folder), named as the archive names them
(``acisf01575_001N001_r0085_pha3.fits.gz``; ``..._e2_r0012_...`` in interleaved mode, see
:mod:`~xlatent.io.csc.products`). The protocol and its sources: ``docs/csc_access.md``.

Robustness:

* every FITS file is verified (opens, all data readable, CHECKSUM/DATASUM when present) and
  a detection's three files are installed together (temp file + ``os.replace``, the PHA last),
  so a file in the directory is always a verified one and a corrupt member is never kept
  (:mod:`~xlatent.io.csc.verify`, :mod:`~xlatent.io.csc.archive`);
* detections whose three files are already present are skipped (resume); anything in the
  directory that is not a readable regular FITS file (a dangling link, a directory, a FIFO,
  an unreadable or empty file) counts as absent (:mod:`~xlatent.io.csc.products`);
* each request has a total deadline, ``timeout_s`` for connect, headers and the whole body
  (a server that drips bytes cannot hold a transfer longer; :mod:`~xlatent.io.csc.transfer`);
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

import contextlib
import json
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from xlatent.core.atomic import atomic_write_text
from xlatent.io.csc.archive import TEMP_PREFIX, TEMP_SUFFIX, BatchResult, check_archive, install
from xlatent.io.csc.products import (
    DEFAULT_BAND,
    DEFAULT_MAX_ARCHIVE_BYTES,
    DEFAULT_MAX_MEMBER_BYTES,
    Detection,
    complete_in,
    detections_from_catalog,
)
from xlatent.io.csc.query import _reason, is_transient
from xlatent.io.csc.transfer import Interrupted, Run, get_to_file

#: The CSC batch retrieval interface (GET ``version`` + ``packageset``; answers a tar file).
DEFAULT_RETRIEVE_URL = "https://cda.cfa.harvard.edu/csccli/retrieve"
RETRIEVE_URL_ENV = "XLATENT_CSC_RETRIEVE_URL"
#: Catalogue release as the retrieval interface names it.
DEFAULT_VERSION = "rel2.1"
REPORT_NAME = "csc_download_report.json"
#: Temporary files of a run: archives and staged members, and the report's temp file.
_TEMP_GLOBS = (f"{TEMP_PREFIX}*{TEMP_SUFFIX}", f".{REPORT_NAME}.*.tmp")
T = TypeVar("T")


def retrieve_url(url: str | None = None) -> str:
    """``url``, else ``$XLATENT_CSC_RETRIEVE_URL``, else the public CSC retrieval interface."""
    return url or os.environ.get(RETRIEVE_URL_ENV) or DEFAULT_RETRIEVE_URL


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
    run: Run = field(default_factory=Run)


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
    band: str = DEFAULT_BAND,
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
    complete = complete_in(directory, set(dets))
    report.already_complete = [d for d in dets if d in complete]
    todo = [d for d in dets if d not in complete]
    _remove_stale_temp(directory)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    lock = threading.Lock()

    def count_retry(_attempt: int, _exc: BaseException) -> None:
        with lock:
            report.retries += 1

    def collect(result: BatchResult) -> None:
        report.downloaded.extend(result.done)
        report.failed.update(result.failed)
        report.refused_members.extend(result.refused)

    bar = _progress_bar(len(dets), len(report.already_complete), progress)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csc-download")
    futures: dict[Future[BatchResult], list[Detection]] = {}
    pending: set[Future[BatchResult]] = set()
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


def _result(fut: Future[BatchResult], batch: list[Detection]) -> BatchResult:
    try:
        return fut.result()
    except Interrupted:
        return BatchResult(failed=dict.fromkeys(batch, "interrupted"))
    except Exception as exc:  # a bug, not a network fault: report, keep going
        return BatchResult(failed={d: f"internal error ({_reason(exc)})" for d in batch})


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


def _fetch_batch(batch: list[Detection], opts: _Options, on_retry: Any) -> BatchResult:
    """Download one batch archive (with retries) and install its verified detections."""
    try:
        try:
            archive = _with_retries(lambda: _request_archive(batch, opts), opts, on_retry)
        except Interrupted:
            raise
        except Exception as exc:
            why = _reason(exc)
            if opts.retries and is_transient(exc):
                why += f" (after {opts.retries} retries)"
            return BatchResult(failed=dict.fromkeys(batch, why))
        try:
            caps = (opts.max_archive_bytes, opts.max_member_bytes)
            return install(archive, batch, opts.directory, *caps, opts.run.check)
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
    """GET one batch; stream the answer to a temp file; check it is a whole tar."""
    params = {
        "version": opts.version,
        "packageset": ",".join(e for d in batch for e in d.packageset(opts.band)),
    }
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=opts.directory)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            get_to_file(opts.url, params, fh, opts.run, opts.timeout_s, opts.max_archive_bytes)
        check_archive(
            path, len(batch), opts.max_archive_bytes, opts.max_member_bytes, opts.run.check
        )
        return path
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


__all__ = [
    "DEFAULT_RETRIEVE_URL",
    "DEFAULT_VERSION",
    "REPORT_NAME",
    "RETRIEVE_URL_ENV",
    "DownloadReport",
    "download_spectra",
    "retrieve_url",
    "write_report",
]
