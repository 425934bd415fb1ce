"""A minimal, fast reader for the binary tables of OGIP PHA files.

Why not astropy here: parsing every card of every header (CSC pha3 files carry several long
headers and GTI extensions) costs ~10 ms a file in astropy, which caps ingest near 80
spectra/s. A PHA spectrum needs a handful of keywords and two or three fixed-width columns,
which this reads straight from the bytes (FITS standard 4.0: 2880-byte blocks, 80-character
cards, big-endian binary tables). ARFs and RMFs, read once per file and cached, still go
through astropy.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BLOCK = 2880
CARD = 80
_TFORM = {"B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "L": "S1"}
_SIZE = {"B": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8, "L": 1, "A": 1, "X": 1,
         "C": 8, "M": 16, "P": 8, "Q": 16}  # fmt: skip


class FitsFormatError(ValueError):
    """The bytes do not follow the FITS standard where this reader needs them to."""


@dataclass
class TableHDU:
    """One extension: its header keywords and, for a BINTABLE, the raw table bytes."""

    header: dict[str, Any]
    data: bytes

    @property
    def names(self) -> list[str]:
        n = int(self.header.get("TFIELDS", 0))
        return [str(self.header.get(f"TTYPE{i}", "")).strip().upper() for i in range(1, n + 1)]

    def column(self, name: str) -> np.ndarray:
        """A numeric column as a numpy array (2-D when the repeat count is above 1)."""
        names = self.names
        if name.upper() not in names:
            raise KeyError(name)
        index = names.index(name.upper())
        offset = 0
        for i in range(index):
            offset += _field_bytes(self.header.get(f"TFORM{i + 1}", ""))
        repeat, code = _parse_tform(self.header.get(f"TFORM{index + 1}", ""))
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


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip-compressed (whatever its name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FitsFormatError(f"damaged gzip stream ({exc})") from None
    return raw


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith("'"):
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out).rstrip()
            out.append(text[i])
            i += 1
        raise FitsFormatError("unterminated string value")
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
        block = raw[pos : pos + BLOCK]
        pos += BLOCK
        for k in range(0, BLOCK, CARD):
            card = block[k : k + CARD].decode("ascii", errors="replace")
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


def _data_size(h: dict[str, Any]) -> int:
    try:
        naxis = int(h.get("NAXIS", 0))
        if naxis == 0:
            return 0
        n = 1
        for i in range(1, naxis + 1):
            n *= int(h[f"NAXIS{i}"])
        bits = abs(int(h["BITPIX"]))
        return bits // 8 * int(h.get("GCOUNT", 1)) * (int(h.get("PCOUNT", 0)) + n)
    except (KeyError, TypeError, ValueError) as exc:
        raise FitsFormatError(f"bad data-size keywords ({exc})") from None


def iter_extensions(raw: bytes) -> Iterator[TableHDU]:
    """Each extension after the primary HDU, in file order."""
    if not raw.startswith(b"SIMPLE  =") or len(raw) < BLOCK:
        raise FitsFormatError("not a FITS file (no SIMPLE card)")
    header, pos = _header(raw, 0)
    pos += -(-_data_size(header) // BLOCK) * BLOCK
    while pos < len(raw):
        if not raw[pos : pos + 8].startswith(b"XTENSION"):
            return  # trailing padding or junk after the last HDU
        header, data_start = _header(raw, pos)
        size = _data_size(header)
        main = int(header.get("NAXIS1", 0)) * int(header.get("NAXIS2", 0))
        if data_start + size > len(raw):
            raise FitsFormatError(f"extension {header.get('EXTNAME', '?')} is truncated")
        yield TableHDU(header, raw[data_start : data_start + main])
        pos = data_start + -(-size // BLOCK) * BLOCK
