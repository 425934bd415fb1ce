"""Verification of a downloaded FITS file: readable, complete, DATASUM/CHECKSUM, size-bounded.

Gzip members are decompressed in a stream that stops at the size cap, so a decompression bomb
costs bounded memory and time.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
import zlib
from pathlib import Path

from xlatent.io.csc.products import DEFAULT_MAX_MEMBER_BYTES
from xlatent.io.csc.query import _reason

#: Python's warning filters are global to the process and ``catch_warnings`` is not thread
#: safe: two download threads inside it at once could restore each other's "error" filter and
#: leave it installed for the whole process (every later warning then an exception). One
#: thread at a time turns astropy's warnings into errors here.
_WARNINGS_AS_ERRORS = threading.Lock()


class CorruptFileError(Exception):
    """A FITS file that does not open or whose data or checksums are bad."""


class TooLarge(CorruptFileError):
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
                raise TooLarge(f"larger than the cap of {max_bytes} B")
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gunzip_bounded(raw, max_bytes)
        with _WARNINGS_AS_ERRORS, warnings.catch_warnings():
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
    except TooLarge:
        raise
    except CorruptFileError as exc:
        raise CorruptFileError(f"corrupt FITS ({exc})") from None
    except Exception as exc:
        raise CorruptFileError(f"corrupt FITS ({_reason(exc)})") from None


def gunzip_bounded(data: bytes, max_bytes: int) -> bytes:
    """Decompress a (possibly multi-member) gzip stream; refuse output beyond ``max_bytes``."""
    out = bytearray()
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        while data:
            room = max_bytes - len(out)
            out += d.decompress(data, room + 1)
            if len(out) > max_bytes:
                raise TooLarge(f"decompresses to more than the cap of {max_bytes} B")
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


__all__ = ["CorruptFileError", "TooLarge", "gunzip_bounded", "verify_fits"]
