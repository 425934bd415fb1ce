"""CSC per-detection products: file names, detections, and which are present in a directory.

A detection is one source in one observation, ``(obsid, obi, region_id)``; its products are
the spectrum (PHA), ARF and RMF, named as the archive names them::

    acisf01575_001N001_r0085_pha3.fits.gz        (instrument, obsid, obi, version, region)
    acisf04396_000N022_e2_r0012_pha3.fits        (interleaved mode: cycle e1 or e2)

The processing version (``N022``) may differ between the products of one detection (a PHA
``N022`` with its ARF and RMF ``N021``): a detection is complete with one file of each
product, whatever their versions. Also the size caps of the download: this module imports
only the standard library, so the command line can show them as defaults cheaply.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

#: Largest answer (one batch archive) read, bytes; also bounds its decompressed content.
DEFAULT_MAX_ARCHIVE_BYTES = 2 * 1024**3
#: Largest archive member, bytes, as stored and (gzip members) decompressed.
DEFAULT_MAX_MEMBER_BYTES = 256 * 1024**2

#: CSC file-name product code -> retrieval ``filetype``. The PHA comes last on purpose.
PRODUCTS: dict[str, str] = {"arf3": "arf", "rmf3": "rmf", "pha3": "spectrum"}

#: Band of the per-detection spectral products in a retrieval ``packageset`` entry
#: (``OBSID.OBI.REGION/spectrum/b``: ACIS broad band, as the Multimodal Universe script asks).
DEFAULT_BAND = "b"

_CSC_FILE = re.compile(
    r"^(acis|hrc)f(\d{5})_(\d{3})N(\d{3})(?:_(e[12]))?_r(\d{4})_(pha3|arf3|rmf3)"
    r"\.fits(?:\.gz)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class Detection:
    """One per-observation CSC detection: the key of its spectrum, ARF and RMF."""

    obsid: int
    obi: int
    region_id: int

    def __str__(self) -> str:
        return f"{self.obsid}.{self.obi}.{self.region_id}"

    def packageset(self, band: str = DEFAULT_BAND) -> list[str]:
        """The retrieval ``packageset`` entries for the PHA, ARF and RMF of this detection:
        ``OBSID.OBI.REGION/<filetype>/<band>`` (joined with ``,`` into one request)."""
        return [f"{self}/{filetype}/{band}" for filetype in PRODUCTS.values()]

    def glob(self, product: str) -> str:
        """File-name pattern of one product (any instrument, processing version, cycle)."""
        return f"*f{self.obsid:05d}_{self.obi:03d}N*_r{self.region_id:04d}_{product}.fits*"


class ProductName(NamedTuple):
    """What a CSC per-detection file name says: detection, product code (``pha3``, ``arf3``,
    ``rmf3``), processing version (``N022`` -> 22), cycle (``""``, ``"e1"`` or ``"e2"``)."""

    detection: Detection
    product: str
    version: int
    cycle: str
    instrument: str


def parse_product(name: str) -> ProductName | None:
    """The parts of a CSC per-detection product file name, else None."""
    m = _CSC_FILE.match(Path(name).name)
    if not m:
        return None
    det = Detection(int(m.group(2)), int(m.group(3)), int(m.group(6)))
    cycle = (m.group(5) or "").lower()
    return ProductName(det, m.group(7).lower(), int(m.group(4)), cycle, m.group(1).lower())


def parse_product_name(name: str) -> tuple[Detection, str] | None:
    """(detection, product code) from a CSC per-detection file name, else None."""
    parsed = parse_product(name)
    return None if parsed is None else (parsed.detection, parsed.product)


def detections_from_catalog(catalog: pd.DataFrame) -> list[Detection]:
    """Unique detections (sorted) of a catalogue with ``obsid``, ``obi``, ``region_id``."""
    keys = catalog[["obsid", "obi", "region_id"]].astype("int64").drop_duplicates()
    keys = keys[(keys >= 0).all(axis=1)]
    return sorted(Detection(int(a), int(b), int(c)) for a, b, c in keys.itertuples(index=False))


def _usable(path: Path) -> bool:
    """Whether ``path`` is (or links to) a readable, non-empty regular file that starts like
    a FITS or gzip file. Never blocks (a FIFO is opened non-blocking and refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return False
        head = os.read(fd, 6)
    except OSError:
        return False
    finally:
        os.close(fd)
    return head == b"SIMPLE" or head[:2] == b"\x1f\x8b"


def complete_files(directory: Path, det: Detection) -> dict[str, Path] | None:
    """The detection's three files in ``directory`` when all are present, else None.

    Only readable regular files that start like FITS (or gzip) count; junk named like a
    product (a dangling link, a directory, a FIFO, an empty or unreadable file) is ignored.
    """
    found = {}
    for product in PRODUCTS:
        hits = sorted(p for p in Path(directory).glob(det.glob(product)) if _usable(p))
        if not hits:
            return None
        found[product] = hits[-1]  # highest processing version
    return found


def complete_in(directory: Path, wanted: set[Detection]) -> set[Detection]:
    """The detections of ``wanted`` whose three files are usable (one scan of the directory)."""
    have: dict[Detection, set[str]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            parsed = parse_product_name(entry.name)
            if parsed is None or parsed[0] not in wanted or parsed[1] in have.get(parsed[0], ()):
                continue
            if _usable(Path(entry.path)):
                have.setdefault(parsed[0], set()).add(parsed[1])
    return {det for det, products in have.items() if len(products) == len(PRODUCTS)}


__all__ = [
    "DEFAULT_BAND",
    "DEFAULT_MAX_ARCHIVE_BYTES",
    "DEFAULT_MAX_MEMBER_BYTES",
    "PRODUCTS",
    "Detection",
    "ProductName",
    "complete_files",
    "complete_in",
    "detections_from_catalog",
    "parse_product",
    "parse_product_name",
]
