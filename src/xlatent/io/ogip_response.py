"""Reading OGIP responses: ARF (``SPECRESP``) and RMF (``MATRIX`` / ``SPECRESP MATRIX`` /
``RSP_MATRIX``) files into :mod:`xlatent.instrument` objects.

Both readers are cached per resolved file (path, size, mtime), so a batch of thousands of
spectra sharing a handful of responses reads each file once.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from astropy.io import fits

from xlatent.core.errors import InputError
from xlatent.instrument.response import ARF, RMF
from xlatent.io.fast_response import arf_arrays, find_extension, rmf_arrays
from xlatent.io.fastfits import FitsFormatError, check_structure, read_bytes

RMF_MATRIX_EXTNAMES = ("MATRIX", "SPECRESP MATRIX", "RSP_MATRIX")


class ResponseCache:
    """Thread-safe cache of parsed ARFs and RMFs, least recently used dropped first.

    Keyed by the file's identity (device, inode, size, mtime), so hard links to one response
    share an entry. Bounded (``max_items``, default 64): a CSC archive has its own arf3/rmf3
    for every detection (an RMF parses to a few MB), so an unbounded cache grows with the
    archive.
    """

    def __init__(self, max_items: int = 64) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int, int, int, int], ARF | RMF] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0

    def _key(self, kind: str, path: Path) -> tuple[str, int, int, int, int]:
        try:
            st = path.stat()
        except OSError as exc:
            raise InputError(path, f"cannot read {kind.upper()}: {exc.strerror or exc}") from None
        return (kind, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def arf(self, path: str | Path) -> ARF:
        return self._get("arf", Path(path), _read_arf)  # type: ignore[return-value]

    def rmf(self, path: str | Path) -> RMF:
        return self._get("rmf", Path(path), _read_rmf)  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._items)

    def _get(self, kind: str, path: Path, reader):  # noqa: ANN001, ANN202
        key = self._key(kind, path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        item = reader(path)
        with self._lock:
            self._items[key] = item
            self.reads += 1
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return item


#: The process-wide cache used by :func:`read_arf` and :func:`read_rmf`.
DEFAULT_CACHE = ResponseCache()


def read_arf(path: str | Path, cache: ResponseCache | None = DEFAULT_CACHE) -> ARF:
    """Read an OGIP ARF (cached unless ``cache=None``)."""
    return _read_arf(Path(path)) if cache is None else cache.arf(path)


def read_rmf(path: str | Path, cache: ResponseCache | None = DEFAULT_CACHE) -> RMF:
    """Read an OGIP RMF (cached unless ``cache=None``)."""
    return _read_rmf(Path(path)) if cache is None else cache.rmf(path)


def _open(path: Path, kind: str, raw: bytes | None = None) -> fits.HDUList:
    """The file (or its bytes ``raw``, already read) as an astropy HDU list."""
    hdul = None
    try:
        # From memory, so a damaged file can never leave an OS file handle open behind it;
        # read_bytes caps the (inflated) size, and every header is checked for sane sizes
        # before astropy allocates anything.
        raw = read_bytes(path) if raw is None else raw
        check_structure(raw)
        hdul = fits.open(io.BytesIO(raw), memmap=False)
        hdul.verify("silentfix")
        return hdul
    except FileNotFoundError:
        raise InputError(path, f"{kind} file not found") from None
    except FitsFormatError as exc:
        raise InputError(path, f"unreadable {kind} ({exc})") from None
    except Exception as exc:  # astropy raises many types for damaged files
        if hdul is not None:
            hdul.close()
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise InputError(path, f"unreadable {kind} ({type(exc).__name__}: {reason})") from None


def _find_hdu(hdul: fits.HDUList, names: tuple[str, ...]) -> fits.BinTableHDU | None:
    return find_extension(hdul[1:], names)


def _read_arf(path: Path) -> ARF:
    raw = _bytes_or_none(path)
    fast = arf_arrays(raw) if raw is not None else None
    if fast is not None:
        return _checked_arf(path, fast["energ_lo"], fast["energ_hi"], fast["specresp"])
    with _open(path, "ARF", raw) as hdul:
        hdu = _find_hdu(hdul, ("SPECRESP",))
        if hdu is None:
            raise InputError(path, "ARF has no SPECRESP extension")
        try:
            d = hdu.data
            lo = np.asarray(d["ENERG_LO"], dtype=np.float64)
            hi = np.asarray(d["ENERG_HI"], dtype=np.float64)
            area = np.asarray(d["SPECRESP"], dtype=np.float64)
        except Exception as exc:
            raise InputError(path, f"damaged ARF table ({type(exc).__name__}: {exc})") from None
    return _checked_arf(path, lo, hi, area)


def _checked_arf(path: Path, lo: np.ndarray, hi: np.ndarray, area: np.ndarray) -> ARF:
    """The ARF, once its energies and areas are sane."""
    if lo.size == 0 or not np.all(np.isfinite(lo) & np.isfinite(hi)) or np.any(hi <= lo):
        raise InputError(path, "ARF has empty, non-finite or non-increasing energy bins")
    if np.any(np.diff(lo) <= 0):
        raise InputError(path, "ARF energy bins are not in increasing order")
    if not np.all(np.isfinite(area)):
        raise InputError(path, "ARF SPECRESP has NaN or infinite values")
    if np.any(area < 0):
        raise InputError(path, f"ARF SPECRESP is negative (min {area.min():.3g} cm^2)")
    if not np.any(area > 0):
        raise InputError(path, "ARF SPECRESP is zero everywhere")
    return ARF(lo, hi, area, str(path))


def _bytes_or_none(path: Path) -> bytes | None:
    """The file's bytes (capped as :func:`read_bytes` caps them), or None when they cannot be
    read: :func:`_open` then reads it again and words the error."""
    try:
        return read_bytes(path)
    except Exception:  # noqa: BLE001
        return None


def _read_rmf(path: Path) -> RMF:
    raw = _bytes_or_none(path)
    fast = rmf_arrays(raw, RMF_MATRIX_EXTNAMES) if raw is not None else None
    if fast is not None:
        return _checked_rmf(path, fast["energ_lo"], fast["energ_hi"], fast["matrix"],
                            fast["e_min"], fast["e_max"], fast["first"])  # fmt: skip
    with _open(path, "RMF", raw) as hdul:
        mat = _find_hdu(hdul, RMF_MATRIX_EXTNAMES)
        if mat is None:
            raise InputError(path, "RMF has no MATRIX / SPECRESP MATRIX / RSP_MATRIX extension")
        ebo = _find_hdu(hdul, ("EBOUNDS",))
        if ebo is None:
            raise InputError(path, "RMF has no EBOUNDS extension")
        try:
            e_min = np.asarray(ebo.data["E_MIN"], dtype=np.float64)
            e_max = np.asarray(ebo.data["E_MAX"], dtype=np.float64)
            n_chan_total = e_min.size
            first = _first_channel(mat, ebo)
            d = mat.data
            energ_lo = np.asarray(d["ENERG_LO"], dtype=np.float64)
            energ_hi = np.asarray(d["ENERG_HI"], dtype=np.float64)
            matrix = _sparse_matrix(d, n_chan_total, first)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(path, f"damaged RMF table ({type(exc).__name__}: {exc})") from None
    return _checked_rmf(path, energ_lo, energ_hi, matrix, e_min, e_max, first)


def _checked_rmf(
    path: Path,
    energ_lo: np.ndarray,
    energ_hi: np.ndarray,
    matrix: sp.csr_matrix,
    e_min: np.ndarray,
    e_max: np.ndarray,
    first: int,
) -> RMF:
    """The RMF, once its energies, channel bounds and matrix values are sane."""
    finite = np.all(np.isfinite(energ_lo) & np.isfinite(energ_hi))
    if energ_lo.size == 0 or not finite or np.any(energ_hi <= energ_lo):
        raise InputError(path, "RMF has empty, non-finite or non-increasing energy bins")
    if e_min.size == 0 or not np.all(np.isfinite(e_min) & np.isfinite(e_max)):
        raise InputError(path, "RMF EBOUNDS are empty or not finite")
    if np.any(e_max <= e_min) or np.any(np.diff(e_min) <= 0):
        raise InputError(path, "RMF EBOUNDS are not increasing")
    if not np.all(np.isfinite(matrix.data)) or np.any(matrix.data < 0):
        raise InputError(path, "RMF MATRIX has NaN, infinite or negative values")
    return RMF(energ_lo, energ_hi, matrix, e_min, e_max, first, str(path))


def _first_channel(mat: fits.BinTableHDU, ebo: fits.BinTableHDU) -> int:
    """Number of the first channel: TLMIN of F_CHAN, else of EBOUNDS CHANNEL, else 1 (OGIP)."""
    for hdu, col in ((mat, "F_CHAN"), (ebo, "CHANNEL")):
        names = [n.upper() for n in hdu.columns.names]
        if col in names:
            key = f"TLMIN{names.index(col) + 1}"
            if key in hdu.header:
                return int(hdu.header[key])
    return 1


def _sparse_matrix(d: fits.FITS_rec, n_chan: int, first: int) -> sp.csr_matrix:
    n_grp = np.asarray(d["N_GRP"], dtype=np.int64)
    f_chan = d["F_CHAN"]
    n_chan_col = d["N_CHAN"]
    values = d["MATRIX"]
    rows, cols, vals = [], [], []
    for i in range(len(d)):
        fc = np.atleast_1d(np.asarray(f_chan[i], dtype=np.int64))[: max(n_grp[i], 0)]
        nc = np.atleast_1d(np.asarray(n_chan_col[i], dtype=np.int64))[: max(n_grp[i], 0)]
        v = np.atleast_1d(np.asarray(values[i], dtype=np.float64))
        if n_grp[i] <= 0 or nc.sum() == 0:
            continue
        if np.any(nc < 0) or nc.sum() > min(v.size, n_chan):
            raise ValueError(f"row {i}: N_CHAN {nc.tolist()[:4]} does not fit the row")
        # Channel indices of every stored element, group after group.
        starts = fc - first
        idx = np.repeat(starts - np.cumsum(nc) + nc, nc) + np.arange(nc.sum())
        if v.size < idx.size:
            raise ValueError(f"row {i}: MATRIX has {v.size} values, N_CHAN asks for {idx.size}")
        if idx.min() < 0 or idx.max() >= n_chan:
            raise ValueError(f"row {i}: channel outside 0..{n_chan - 1}")
        rows.append(np.full(idx.size, i))
        cols.append(idx)
        vals.append(v[: idx.size])
    if not rows:
        raise ValueError("matrix has no non-zero elements")
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(d), n_chan),
    )
