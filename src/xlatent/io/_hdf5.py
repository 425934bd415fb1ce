"""Looking inside an HDF5 file to identify its format (shared by the HDF5 format modules)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py

from xlatent.core.errors import InputError
from xlatent.io.pha import _short

#: The first bytes of every HDF5 file.
HDF5_MAGIC = b"\x89HDF"


def probe(path: Path, head: bytes, test: Callable[[h5py.File], bool]) -> bool:
    """``test`` applied to the open HDF5 file; False when ``head`` is not plain HDF5.

    A sealed file (:mod:`xlatent.core.seal`, starting with the seal, not the HDF5 signature) is
    a SpectrumSet, identified by its first bytes alone and never opened here: its reader
    checks the seal once before libhdf5 sees it. A file that starts like HDF5 but cannot be
    opened raises :class:`InputError`.
    """
    if not head.startswith(HDF5_MAGIC):
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(test(f))
    except Exception as exc:  # h5py raises OSError, KeyError, RuntimeError, ...
        raise InputError(path, f"damaged HDF5 file ({_short(exc)})") from None
