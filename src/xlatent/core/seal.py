"""A SHA-256 seal in the HDF5 user block of every SpectrumSet file.

libhdf5 can loop forever on some damaged files (a flipped byte in a B-tree or a heap), inside
C where Python cannot interrupt it, and its own checksums do not cover every structure. So a
SpectrumSet file starts with a 512-byte HDF5 user block (libhdf5 finds the superblock after
it) holding :data:`MAGIC`, the SHA-256 and the length of everything after the block. Readers
check the seal before handing the file to libhdf5: a damaged, truncated or edited file is
refused with a one-line reason and is never parsed. Files without a seal (written by older
versions) are read as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xlatent.core.errors import InputError

#: Size of the user block (a power of two >= 512, as HDF5 requires).
USERBLOCK_BYTES = 512
MAGIC = b"XLATENT-SEAL-SHA256\n"
_CHUNK = 4 * 2**20


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        fh.seek(USERBLOCK_BYTES)
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def seal(path: Path) -> None:
    """Write the seal of ``path`` (an HDF5 file created with a user block) into its block."""
    digest, size = _digest(path)
    block = MAGIC + f"{digest}\n{size}\n".encode()
    with open(path, "r+b") as fh:
        fh.write(block.ljust(USERBLOCK_BYTES, b"\0"))


def is_sealed(head: bytes) -> bool:
    """Whether a file's first bytes are a seal."""
    return head.startswith(MAGIC)


def check_seal(path: Path) -> None:
    """Refuse (:class:`InputError`) a sealed file whose content no longer matches its seal."""
    with open(path, "rb") as fh:
        block = fh.read(USERBLOCK_BYTES)
    if not is_sealed(block):
        return  # an unsealed (older) file
    try:
        digest, size = block[len(MAGIC) :].split(b"\n")[:2]
        expected = (digest.decode("ascii"), int(size))
    except (ValueError, UnicodeDecodeError):
        raise InputError(path, "damaged file (unreadable seal)") from None
    found = _digest(path)
    if found != expected:
        what = "SHA-256" if found[1] == expected[1] else f"length, {found[1]} of {expected[1]} B"
        raise InputError(
            path,
            f"damaged, or changed outside xlatent (content does not match its seal: {what}; "
            "if you trust it: SpectrumSet.read_hdf5(path, check_seal=False))",
        )
