"""Download per-detection CSC spectra (PHA, ARF, RMF) through the CSC retrieval interface.

Detections are requested in batches (one HTTP request per batch, ``packageset`` entries
``OBSID.OBI.REGION/<filetype>/<band>``) and each answer is a tar archive holding the CSC
per-detection files, named as the archive names them (``acisf01575_001N001_r0085_pha3.fits.gz``).

Robustness:

* every FITS file is verified (opens, all data readable, CHECKSUM/DATASUM when present) and
  a detection's three files are installed together (temp file + ``os.replace``, the PHA last),
  so a file in the directory is always a verified one and a corrupt member is never kept;
* detections whose three files are already present are skipped (resume);
* timeouts, HTTP 408/429/5xx, dropped connections and truncated archives are retried with
  exponential backoff; any other failure is reported per detection, never fatal for the run;
* a JSON report of what was downloaded, skipped and failed is written into the directory.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import tarfile
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from xlatent.core.atomic import atomic_write_text
from xlatent.io.csc.query import TransientError, _reason, with_retries

#: The CSC command-line retrieval interface for packages of files (answers with a tar file).
DEFAULT_RETRIEVE_URL = "https://cda.cfa.harvard.edu/csccli/retrievePackage"
RETRIEVE_URL_ENV = "XLATENT_CSC_RETRIEVE_URL"
#: Catalogue release as the retrieval interface names it.
DEFAULT_VERSION = "rel2.1"
REPORT_NAME = "csc_download_report.json"

#: CSC file-name product code -> retrieval ``filetype``. The PHA comes last on purpose.
PRODUCTS: dict[str, str] = {"arf3": "arf", "rmf3": "rmf", "pha3": "spectrum"}

_CSC_FILE = re.compile(
    r"^(?:acis|hrc)f(\d{5})_(\d{3})N(\d{3})_r(\d{4})_(pha3|arf3|rmf3)\.fits(?:\.gz)?$",
    re.IGNORECASE,
)
_MAX_MEMBER_BYTES = 512 * 1024 * 1024
# mkstemp files are owner-only; installed files get the usual umask mode.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


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


def complete_files(directory: Path, det: Detection) -> dict[str, Path] | None:
    """The detection's three files in ``directory`` when all are present (non-empty), else None."""
    found = {}
    for product in PRODUCTS:
        hits = sorted(p for p in directory.glob(det.glob(product)) if p.stat().st_size > 0)
        if not hits:
            return None
        found[product] = hits[-1]  # highest processing version
    return found


def retrieve_url(url: str | None = None) -> str:
    """``url``, else ``$XLATENT_CSC_RETRIEVE_URL``, else the public CSC retrieval interface."""
    return url or os.environ.get(RETRIEVE_URL_ENV) or DEFAULT_RETRIEVE_URL


# ---------------------------------------------------------------------------- verification
class CorruptFileError(Exception):
    """A FITS file that does not open or whose data or checksums are bad."""


def verify_fits(path: Path) -> None:
    """Raise :class:`CorruptFileError` unless ``path`` is a complete, readable FITS file.

    Every HDU's data must be readable, and DATASUM and CHECKSUM must match where an HDU has
    them (a blank keyword counts as absent, as in CSC primary headers). The sums are taken
    over the raw bytes (gzip-decompressed), which also covers variable-length heaps such as an
    RMF matrix, where astropy's own checksum verification disagrees with valid files.
    """
    from astropy.io import fits

    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
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
    except CorruptFileError as exc:
        raise CorruptFileError(f"corrupt FITS ({exc})") from None
    except Exception as exc:
        raise CorruptFileError(f"corrupt FITS ({_reason(exc)})") from None


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
    """What a download run did: per detection, downloaded, already there, or failed."""

    directory: str
    url: str
    requested: int = 0
    already_complete: list[Detection] = field(default_factory=list)
    downloaded: list[Detection] = field(default_factory=list)
    failed: dict[Detection, str] = field(default_factory=dict)
    retries: int = 0
    elapsed_s: float = 0.0

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
            "retries": self.retries,
            "elapsed_s": round(self.elapsed_s, 3),
            "downloaded": ids(sorted(self.downloaded)),
            "already_complete": ids(sorted(self.already_complete)),
            "failed": [
                {**ids([d])[0], "reason": reason} for d, reason in sorted(self.failed.items())
            ],
        }

    def summary(self) -> str:
        """A short human-readable account, one line per failure."""
        lines = [
            f"{self.requested} detections: {len(self.downloaded)} downloaded, "
            f"{len(self.already_complete)} already complete, {len(self.failed)} failed"
        ]
        lines += [f"  failed {d}: {why}" for d, why in sorted(self.failed.items())]
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
) -> DownloadReport:
    """Fetch the PHA, ARF and RMF of every detection into ``directory`` (flat, CSC names).

    ``catalog`` is a table with ``obsid``, ``obi``, ``region_id`` (e.g. from
    :func:`~xlatent.io.csc.query.read_catalog`) or a list of :class:`Detection`.
    Writes ``csc_download_report.json`` into ``directory`` and returns the report.
    """
    if batch_size < 1 or workers < 1 or retries < 0 or backoff_s < 0 or timeout_s <= 0:
        raise ValueError("batch_size and workers must be >= 1, retries/backoff >= 0, timeout > 0")
    t0 = time.monotonic()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dets = (
        detections_from_catalog(catalog)
        if isinstance(catalog, pd.DataFrame)
        else sorted(set(catalog))
    )
    opts = _Options(retrieve_url(url), directory, version, band, timeout_s, retries, backoff_s)
    report = DownloadReport(directory=str(directory), url=opts.url, requested=len(dets))
    todo = []
    for det in dets:
        (report.already_complete if complete_files(directory, det) else todo).append(det)
    _remove_stale_temp(directory)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    lock = threading.Lock()

    def count_retry(_attempt: int, _exc: BaseException) -> None:
        with lock:
            report.retries += 1

    bar = _progress_bar(len(dets), len(report.already_complete), progress)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_fetch_batch, b, opts, count_retry): b for b in batches}
            for fut in as_completed(futures):
                batch = futures[fut]
                try:
                    done, failed = fut.result()
                except Exception as exc:  # a bug, not a network fault: report, keep going
                    done, failed = [], {d: f"internal error ({_reason(exc)})" for d in batch}
                report.downloaded.extend(done)
                report.failed.update(failed)
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        report.elapsed_s = time.monotonic() - t0
        write_report(report)
    return report


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
    """Temporary files left by an interrupted run (never a completed file)."""
    for p in directory.glob(".csc-*.part"):
        with contextlib.suppress(OSError):
            p.unlink()


def _fetch_batch(
    batch: list[Detection], opts: _Options, on_retry: Any
) -> tuple[list[Detection], dict[Detection, str]]:
    """Download one batch archive (with retries) and install its verified detections."""
    try:
        archive = with_retries(
            lambda: _request_archive(batch, opts),
            retries=opts.retries,
            backoff_s=opts.backoff_s,
            on_retry=on_retry,
        )
    except Exception as exc:
        why = _reason(exc)
        if opts.retries and _is_retryable(exc):
            why += f" (after {opts.retries} retries)"
        return [], dict.fromkeys(batch, why)
    try:
        return _install(archive, batch, opts.directory)
    finally:
        with contextlib.suppress(OSError):
            archive.unlink()


def _is_retryable(exc: BaseException) -> bool:
    from xlatent.io.csc.query import is_transient

    return is_transient(exc)


def _request_archive(batch: list[Detection], opts: _Options) -> Path:
    """POST one batch request; stream the answer to a temp file; check it is a whole tar."""
    data = {
        "version": opts.version,
        "packageset": "+".join(e for d in batch for e in d.packageset(opts.band)),
    }
    fd, tmp = tempfile.mkstemp(prefix=".csc-", suffix=".part", dir=opts.directory)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            with requests.post(opts.url, data=data, stream=True, timeout=opts.timeout_s) as r:
                r.raise_for_status()
                expected = r.headers.get("Content-Length")
                n = 0
                for chunk in r.iter_content(chunk_size=1 << 20):
                    fh.write(chunk)
                    n += len(chunk)
        if expected is not None and expected.isdigit() and n < int(expected):
            raise TransientError(f"connection dropped after {n} of {expected} bytes")
        _check_archive(path)
        return path
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _check_archive(path: Path) -> None:
    """Read every member of the tar once: truncation is transient, non-tar is not."""
    size = path.stat().st_size
    if size == 0:
        raise TransientError("empty answer")
    with open(path, "rb") as fh:
        head = fh.read(512)
    looks_like_tar = head[:2] == b"\x1f\x8b" or (len(head) >= 262 and head[257:262] == b"ustar")
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    f = tar.extractfile(member)
                    if f is not None:
                        while f.read(1 << 20):
                            pass
    except (tarfile.TarError, EOFError, OSError) as exc:
        if looks_like_tar:
            raise TransientError(f"truncated archive ({_reason(exc)})") from None
        text = " ".join(head[:160].decode("utf-8", "replace").split())
        raise RuntimeError(f"answer is not a tar archive: {text!r}") from None


def _install(
    archive: Path, batch: list[Detection], directory: Path
) -> tuple[list[Detection], dict[Detection, str]]:
    """Verify each member; install a detection's files only when all three are good."""
    wanted = set(batch)
    staged: dict[Detection, dict[str, Path]] = {}
    failed: dict[Detection, str] = {}
    targets: dict[Path, Path] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parsed = parse_product_name(member.name)
                if not member.isfile() or parsed is None or parsed[0] not in wanted:
                    continue
                det, product = parsed
                if det in failed:
                    continue
                if member.size > _MAX_MEMBER_BYTES:
                    failed[det] = f"{Path(member.name).name}: implausibly large ({member.size} B)"
                    continue
                name = Path(member.name).name
                fd, tmp = tempfile.mkstemp(prefix=".csc-", suffix=".part", dir=directory)
                tmp_path = Path(tmp)
                src = tar.extractfile(member)
                with os.fdopen(fd, "wb") as out, contextlib.closing(src or io.BytesIO()) as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                try:
                    verify_fits(tmp_path)
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
                targets[tmp_path] = directory / name
        done = []
        for det in batch:
            if det in failed:
                continue
            files = staged.get(det, {})
            missing = [PRODUCTS[p] for p in PRODUCTS if p not in files]
            if missing:
                failed[det] = f"not in the archive: {', '.join(missing)}"
                continue
            for product in PRODUCTS:  # ARF, RMF, then the PHA that names them
                os.replace(files[product], targets[files[product]])
            done.append(det)
        return done, failed
    finally:
        for tmp_path in targets:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
        for det in batch:
            for tmp_path in staged.get(det, {}).values():
                with contextlib.suppress(OSError):
                    tmp_path.unlink()


__all__ = [
    "DEFAULT_RETRIEVE_URL",
    "DEFAULT_VERSION",
    "PRODUCTS",
    "REPORT_NAME",
    "RETRIEVE_URL_ENV",
    "CorruptFileError",
    "Detection",
    "DownloadReport",
    "complete_files",
    "detections_from_catalog",
    "download_spectra",
    "parse_product_name",
    "retrieve_url",
    "verify_fits",
]
