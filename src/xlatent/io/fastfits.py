"""A minimal, fast reader for the binary tables of OGIP PHA files.

Why not astropy here: parsing every card of every header (CSC pha3 files carry several long
headers and GTI extensions) costs ~10 ms a file in astropy, which caps ingest near 80
spectra/s. A PHA spectrum needs a handful of keywords and two or three fixed-width columns,
which this reads straight from the bytes (FITS standard 4.0: 2880-byte blocks, 80-character
cards, big-endian binary tables). RMFs and ARFs are read from these tables too
(:mod:`xlatent.io.fast_response`; astropy for any file that is not plain).
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

BLOCK = 2880
CARD = 80
_TFORM = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "L": "S1"}
_SIZE = {"B": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8, "L": 1, "A": 1, "X": 1,
         "C": 8, "M": 16, "P": 8, "Q": 16}  # fmt: skip


class FitsFormatError(ValueError):
    """The bytes do not follow the FITS standard where this reader needs them to."""


class FileKindError(FitsFormatError):
    """The path is not a regular file (FIFO, device, socket, dangling symlink, symlink loop)."""


@dataclass
class TableHDU:
    """One extension: its header keywords and, for a BINTABLE, the raw table bytes and its
    heap (the bytes from THEAP to the end of the data: variable-length arrays live there)."""

    header: dict[str, Any]
    data: bytes
    heap: bytes = b""

    @property
    def names(self) -> list[str]:
        n = self.header.get("TFIELDS", 0)
        n = min(n, MAX_TFIELDS) if isinstance(n, int) and n > 0 else 0
        return [str(self.header.get(f"TTYPE{i}", "")).strip().upper() for i in range(1, n + 1)]

    def field(self, name: str) -> tuple[int, int, str]:
        """(0-based index, byte offset in a row, TFORM upper-cased) of column ``name``."""
        if str(self.header.get("XTENSION", "")).strip().upper() != "BINTABLE":
            raise FitsFormatError(f"column {name} is not in a binary table")
        names = self.names
        if name.upper() not in names:
            raise KeyError(name)
        index = names.index(name.upper())
        offset = 0
        for i in range(index):
            offset += _field_bytes(self.header.get(f"TFORM{i + 1}", ""))
        return index, offset, str(self.header.get(f"TFORM{index + 1}", "")).strip().upper()

    def column(self, name: str) -> np.ndarray:
        """A numeric column as a numpy array (2-D when the repeat count is above 1)."""
        index, offset, tform = self.field(name)
        repeat, code = _parse_tform(tform)
        if code not in _TFORM or code == "L":
            raise FitsFormatError(f"column {name} has unsupported format {code}")
        row_bytes = int(self.header["NAXIS1"])
        n_rows = int(self.header["NAXIS2"])
        if len(self.data) < row_bytes * n_rows:
            raise FitsFormatError("table data are truncated")
        dtype = np.dtype(_TFORM[code])
        rows = np.ndarray(
            shape=(n_rows, repeat),
            dtype=dtype,
            buffer=self.data,
            offset=offset,
            strides=(row_bytes, dtype.itemsize),
        )
        out = rows.astype(dtype.newbyteorder("="))
        scale = self.header.get(f"TSCAL{index + 1}")
        zero = self.header.get(f"TZERO{index + 1}")
        if scale is not None or zero is not None:
            out = out * float(scale if scale is not None else 1.0) + float(zero or 0.0)
        return out[:, 0] if repeat == 1 else out


def _parse_tform(tform: Any) -> tuple[int, str]:
    text = str(tform).strip().upper()
    digits = ""
    while text and text[0].isdigit():
        digits, text = digits + text[0], text[1:]
    if not text:
        raise FitsFormatError(f"bad TFORM {tform!r}")
    return (int(digits) if digits else 1), text[0]


def _field_bytes(tform: Any) -> int:
    repeat, code = _parse_tform(tform)
    if code not in _SIZE:
        raise FitsFormatError(f"bad TFORM {tform!r}")
    if code == "X":
        return (repeat + 7) // 8
    return repeat * _SIZE[code]


#: Most bytes a file may hold, after gunzipping; larger ones (or gzip bombs) are refused.
#: Change it at run time (``fastfits.MAX_BYTES = ...``); it is read on every call.
MAX_BYTES = 256 * 2**20
_CHUNK = 2**20
#: The FITS standard's limits on the number of axes and of table columns.
MAX_NAXIS = 999
MAX_TFIELDS = 999
_BITPIX = (8, 16, 32, 64, -32, -64)


def check_regular(path: Path) -> os.stat_result:
    """``os.stat`` of a regular file; anything else raises without opening it.

    FIFOs, devices and sockets raise :class:`FitsFormatError` (opening a FIFO can block
    forever); dangling symlinks raise ``FileNotFoundError``, symlink loops ``OSError``.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise FileKindError("dangling symlink (its target does not exist)") from None
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileKindError("symlink loop") from None
        raise
    if not stat.S_ISREG(st.st_mode):
        raise FileKindError(f"not a regular file ({_file_kind(st.st_mode)})")
    return st


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "a special file"


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, gunzipped when it is gzip-compressed (whatever its name).

    Only regular files are opened (see :func:`check_regular`), and at most ``limit`` bytes
    (default :data:`MAX_BYTES`) are read or inflated: gzip is stream-decompressed in chunks and
    refused once its output passes the limit, so a gzip bomb costs ``limit`` bytes of memory
    at most.
    """
    limit = MAX_BYTES if limit is None else int(limit)
    st = check_regular(path)
    # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open still returns.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise FileKindError("not a regular file")
        head = fh.read(2)
        if head == b"\x1f\x8b":
            fh.seek(0)
            return _gunzip(fh, limit)
        if st.st_size > limit:
            raise FitsFormatError(f"file is {_mb(st.st_size)}, over the {_mb(limit)} limit")
        fh.seek(0)
        raw = fh.read(limit + 1)
        if len(raw) > limit:
            raise FitsFormatError(f"file is over the {_mb(limit)} limit")
        return raw


def _mb(n: int) -> str:
    return f"{n / 2**20:.4g} MB"


def _gunzip(fh: BinaryIO, limit: int) -> bytes:
    """Inflate every gzip member of ``fh``; refuse once the output passes ``limit`` bytes.

    Output is produced a few MB at a time and kept as a list of pieces, so a refused file
    never costs much more than ``limit`` bytes of memory.
    """
    pieces: list[bytes] = []
    total = 0
    d = zlib.decompressobj(wbits=31)
    pending = b""
    try:
        while True:
            if not pending:
                pending = fh.read(_CHUNK)
                if not pending:
                    break
            piece = d.decompress(pending, min(limit - total + 1, 4 * _CHUNK))
            total += len(piece)
            if total > limit:
                raise FitsFormatError(f"gzip data inflate to more than the {_mb(limit)} limit")
            pieces.append(piece)
            pending = d.unconsumed_tail
            if d.eof:
                rest = d.unused_data + pending
                if len(rest) < 2:
                    rest += fh.read(_CHUNK)
                if not rest.startswith(b"\x1f\x8b"):
                    # Trailing zeros or junk after the last member: ignored, as gzip does.
                    return b"".join(pieces)
                d, pending = zlib.decompressobj(wbits=31), rest
    except zlib.error as exc:
        raise FitsFormatError(f"damaged gzip stream ({exc})") from None
    if not d.eof:
        raise FitsFormatError("damaged gzip stream (truncated)")
    return b"".join(pieces)


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        # Up to the first lone quote; '' stands for one quote (found with str.find: a loop
        # over the characters cost ~40% of reading a CSC pha3 file's headers).
        out, i = [], 1
        while True:
            j = text.find("'", i)
            if j < 0:
                raise FitsFormatError("unterminated string value")
            if text[j + 1 : j + 2] == "'":
                out.append(text[i : j + 1])
                i = j + 2
                continue
            out.append(text[i:j])
            return "".join(out).rstrip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text.replace("D", "E"))
    except ValueError:
        raise FitsFormatError(f"unparsable value {text[:20]!r}") from None


def _header(raw: bytes, start: int) -> tuple[dict[str, Any], int]:
    """Parse the header at ``start``; return it and the offset of its data."""
    header: dict[str, Any] = {}
    pos = start
    last_string_key = None
    while True:
        if pos + BLOCK > len(raw):
            raise FitsFormatError("header is truncated (no END card)")
        # One decode a block: "replace" gives one character per byte, so cards stay 80 wide.
        block = raw[pos : pos + BLOCK].decode("ascii", errors="replace")
        pos += BLOCK
        for k in range(0, BLOCK, CARD):
            card = block[k : k + CARD]
            key = card[:8].strip().upper()
            if key == "END":
                return header, pos
            if key == "CONTINUE" and last_string_key:
                # Long-string convention: the previous value ended in '&'.
                prev = str(header[last_string_key])
                header[last_string_key] = prev.removesuffix("&") + str(_value(card[8:]) or "")
                continue
            if card[8:10] != "= " or not key:
                continue
            try:
                header[key] = _value(card[10:])
            except FitsFormatError:
                header[key] = None
            last_string_key = key if isinstance(header[key], str) else None


def _int_keyword(h: dict[str, Any], key: str, lo: int, hi: int | None = None) -> int:
    """A mandatory integer keyword within [lo, hi], else :class:`FitsFormatError`."""
    value = h.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        shown = "missing" if key not in h else repr(value)[:30]
        raise FitsFormatError(f"{key} is {shown}, not an integer")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise FitsFormatError(f"{key} = {value} is not {bound}")
    return value


def _data_size(h: dict[str, Any], primary: bool, available: int) -> tuple[int, int]:
    """Bytes of data (with the heap) and of the main table, checked before any allocation.

    NAXIS, NAXISn, BITPIX, PCOUNT, GCOUNT and, for binary tables, TFIELDS and the TFORMs must
    be sane integers that agree, and the data must fit in the ``available`` bytes.
    """
    bitpix = _int_keyword(h, "BITPIX", -64, 64)
    if bitpix not in _BITPIX:
        raise FitsFormatError(f"BITPIX = {bitpix} is not one of {_BITPIX}")
    naxis = _int_keyword(h, "NAXIS", 0, MAX_NAXIS)
    n = 1
    for i in range(1, naxis + 1):
        n *= _int_keyword(h, f"NAXIS{i}", 0)
        if n * abs(bitpix) // 8 > available:
            break  # already too big: no need to multiply further
    if naxis == 0:
        n = 0
    pcount = 0 if primary else _int_keyword(h, "PCOUNT", 0)
    gcount = 1 if primary else _int_keyword(h, "GCOUNT", 0)
    size = abs(bitpix) // 8 * gcount * (pcount + n)
    if size > available:
        raise FitsFormatError(
            f"header asks for {size} data bytes but only {max(available, 0)} follow"
        )
    xtension = str(h.get("XTENSION", "")).strip().upper()
    if xtension == "BINTABLE":
        if naxis != 2 or bitpix != 8:
            raise FitsFormatError(f"BINTABLE with NAXIS = {naxis}, BITPIX = {bitpix}")
        tfields = _int_keyword(h, "TFIELDS", 0, MAX_TFIELDS)
        row = sum(_field_bytes(h.get(f"TFORM{i}", "")) for i in range(1, tfields + 1))
        if row != h["NAXIS1"]:
            raise FitsFormatError(f"TFORMs give {row} bytes a row but NAXIS1 = {h['NAXIS1']}")
        if row == 0 and h["NAXIS2"] > 0:
            raise FitsFormatError(f"NAXIS2 = {h['NAXIS2']} rows of 0 bytes")
    return size, n * abs(bitpix) // 8


def iter_extensions(raw: bytes) -> Iterator[TableHDU]:
    """Each extension after the primary HDU, in file order (headers checked, data sliced)."""
    for header, start, main in _walk(raw):
        size, _ = _data_size(header, False, len(raw) - start)
        theap = header.get("THEAP", main)
        heap = b""
        if isinstance(theap, int) and not isinstance(theap, bool) and main <= theap <= size:
            heap = raw[start + theap : start + size]
        yield TableHDU(header, raw[start : start + main], heap)


def check_structure(raw: bytes) -> int:
    """Check every header of a FITS file (as :func:`iter_extensions`); the number of HDUs."""
    return 1 + sum(1 for _ in _walk(raw))


def _walk(raw: bytes) -> Iterator[tuple[dict[str, Any], int, int]]:
    if not raw.startswith(b"SIMPLE  =") or len(raw) < BLOCK:
        raise FitsFormatError("not a FITS file (no SIMPLE card)")
    header, pos = _header(raw, 0)
    size, _ = _data_size(header, True, len(raw) - pos)
    pos += -(-size // BLOCK) * BLOCK
    while pos < len(raw):
        if not raw[pos : pos + 8].startswith(b"XTENSION"):
            return  # trailing padding or junk after the last HDU
        header, data_start = _header(raw, pos)
        try:
            size, main = _data_size(header, False, len(raw) - data_start)
        except FitsFormatError as exc:
            raise FitsFormatError(f"extension {header.get('EXTNAME', '?')}: {exc}") from None
        yield header, data_start, main
        pos = data_start + -(-size // BLOCK) * BLOCK
