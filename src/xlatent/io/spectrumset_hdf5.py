"""Format ``spectrumset``: xlatent's own SpectrumSet HDF5 files, as an input format.

Read only when named explicitly (directory scans never pick one up, so an output file is not
read back as input). The layout itself is written and read by :class:`~xlatent.core.SpectrumSet`.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.errors import XlatentError
from xlatent.core.seal import is_sealed
from xlatent.core.spectrumset import FORMAT_NAME
from xlatent.io._hdf5 import probe
from xlatent.io.fastfits import FileKindError, check_regular
from xlatent.io.pha import _short

NAME = "spectrumset"


def identify(path: Path, head: bytes) -> bool:
    """A sealed file (only xlatent writes the seal), or an older HDF5 file whose ``format``
    attribute names a SpectrumSet."""
    return is_sealed(head) or probe(path, head, _is_spectrum_set)


def _is_spectrum_set(f: h5py.File) -> bool:
    fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode("utf-8", "replace")
    return fmt == FORMAT_NAME


def read(path: str | Path, grid: EnergyGrid | None = None, **_options: object) -> SpectrumSet:
    """The set in ``path``; with ``grid``, refused unless it is on that grid."""
    path = Path(path)
    try:
        check_regular(path)
        s = SpectrumSet.read_hdf5(path)
    except XlatentError:
        raise
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except Exception as exc:  # h5py and numpy raise many types for damaged files
        raise InputError(path, f"damaged SpectrumSet file ({_short(exc)})") from None
    if grid is not None and s.grid != grid:
        raise InputError(path, f"SpectrumSet on another grid ({s.grid})")
    return s
