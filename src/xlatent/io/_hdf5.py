"""Looking inside an HDF5 file to identify its format (shared by the HDF5 format modules)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py

from xlatent.core.errors import InputError
from xlatent.core.seal import check_seal, is_sealed
from xlatent.io.pha import _short

#: The first bytes of every HDF5 file.
HDF5_MAGIC = b"\x89HDF"


def probe(path: Path, head: bytes, test: Callable[[h5py.File], bool]) -> bool:
    """``test`` applied to the open HDF5 file; False when ``head`` is not HDF5.

    A file that starts like HDF5 but cannot be opened raises :class:`InputError`.
    """
    if not (head.startswith(HDF5_MAGIC) or is_sealed(head)):
        return False
    try:
        check_seal(path)
        with h5py.File(path, "r") as f:
            return bool(test(f))
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ...
        raise InputError(path, f"damaged HDF5 file ({_short(exc)})") from None
