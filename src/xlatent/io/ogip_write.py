"""OGIP writers: type-I PHA spectra (OGIP/92-007), ARF and RMF (CAL/GEN/92-002), via astropy.

Files are written atomically (temporary file + rename). The RMF uses the standard compressed
layout: per energy row N_GRP, and variable-length F_CHAN / N_CHAN / MATRIX columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from xlatent.core.atomic import atomic_path
from xlatent.instrument import ARF, RMF, Response


def _ogip_common(hdr: fits.Header, telescope: str, instrument: str) -> None:
    hdr["TELESCOP"] = (telescope, "mission/satellite name")
    hdr["INSTRUME"] = (instrument, "instrument/detector name")
    hdr["FILTER"] = ("NONE", "filter in use")
    hdr["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")


def write_pha(
    path: str | Path,
    counts: np.ndarray,
    exposure_s: float,
    backscal: float = 1.0,
    *,
    background: bool = False,
    backfile: str = "none",
    respfile: str = "none",
    ancrfile: str = "none",
    first_channel: int = 1,
    areascal: float = 1.0,
    telescope: str = "CHANDRA",
    instrument: str = "ACIS",
    extra: dict[str, object] | None = None,
) -> Path:
    """Write an OGIP type-I PHA file (integer COUNTS per PI channel, POISSERR = T)."""
    counts = np.asarray(counts)
    if np.any(counts < 0) or not np.all(np.equal(np.mod(counts, 1), 0)):
        raise ValueError("PHA COUNTS must be non-negative integers")
    n = counts.size
    channel = np.arange(first_channel, first_channel + n, dtype=np.int32)
    cols = fits.ColDefs(
        [
            fits.Column(name="CHANNEL", format="J", array=channel),
            fits.Column(name="COUNTS", format="J", unit="count", array=counts.astype(np.int32)),
        ]
    )
    hdu = fits.BinTableHDU.from_columns(cols)
    h = hdu.header
    h["EXTNAME"] = ("SPECTRUM", "name of this binary table extension")
    _ogip_common(h, telescope, instrument)
    h["HDUCLAS1"] = ("SPECTRUM", "PHA dataset (OGIP memo OGIP-92-007)")
    h["HDUCLAS2"] = ("BKG" if background else "TOTAL", "background or total counts")
    h["HDUCLAS3"] = ("COUNT", "PHA data stored as counts")
    h["HDUCLAS4"] = ("TYPE:I", "single PHA dataset")
    h["HDUVERS"] = ("1.2.1", "version of format")
    h["CHANTYPE"] = ("PI", "channel type (PHA, PI etc)")
    h["DETCHANS"] = (n, "total number of detector channels")
    h["TLMIN1"] = (first_channel, "lowest legal channel number")
    h["TLMAX1"] = (first_channel + n - 1, "highest legal channel number")
    h["EXPOSURE"] = (float(exposure_s), "[s] exposure time")
    h["AREASCAL"] = (float(areascal), "area scaling factor")
    h["BACKSCAL"] = (float(backscal), "background scaling factor")
    h["CORRSCAL"] = (0.0, "correction scaling factor")
    h["BACKFILE"] = (backfile, "associated background filename")
    h["CORRFILE"] = ("none", "associated correction filename")
    h["RESPFILE"] = (respfile, "associated redistribution matrix filename")
    h["ANCRFILE"] = (ancrfile, "associated ancillary response filename")
    h["POISSERR"] = (True, "Poissonian errors to be assumed")
    h["SYS_ERR"] = (0.0, "no systematic error")
    h["GROUPING"] = (0, "no grouping of the data")
    h["QUALITY"] = (0, "no data quality information")
    for key, value in (extra or {}).items():
        h[key] = value
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, checksum=True)
    return path


def write_arf(
    path: str | Path, arf: ARF, telescope: str = "CHANDRA", instrument: str = "ACIS"
) -> Path:
    """Write an OGIP ARF (``SPECRESP`` extension, cm^2 on ENERG_LO/ENERG_HI in keV)."""
    cols = fits.ColDefs(
        [
            fits.Column(name="ENERG_LO", format="E", unit="keV", array=arf.energ_lo),
            fits.Column(name="ENERG_HI", format="E", unit="keV", array=arf.energ_hi),
            fits.Column(name="SPECRESP", format="E", unit="cm**2", array=arf.specresp),
        ]
    )
    hdu = fits.BinTableHDU.from_columns(cols)
    h = hdu.header
    h["EXTNAME"] = "SPECRESP"
    _ogip_common(h, telescope, instrument)
    h["HDUCLAS1"] = "RESPONSE"
    h["HDUCLAS2"] = "SPECRESP"
    h["HDUVERS"] = "1.1.0"
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, checksum=True)
    return path


def write_rmf(
    path: str | Path, rmf: RMF, telescope: str = "CHANDRA", instrument: str = "ACIS"
) -> Path:
    """Write an OGIP RMF: ``MATRIX`` (N_GRP, variable-length F_CHAN/N_CHAN/MATRIX) + ``EBOUNDS``."""
    mat = rmf.matrix.tocsr()
    mat.sort_indices()
    first = int(rmf.first_channel)
    n_grp, f_chan, n_chan, values = [], [], [], []
    for i in range(mat.shape[0]):
        idx = mat.indices[mat.indptr[i] : mat.indptr[i + 1]]
        val = mat.data[mat.indptr[i] : mat.indptr[i + 1]]
        keep = val != 0
        idx, val = idx[keep], val[keep]
        if idx.size == 0:
            n_grp.append(0)
            f_chan.append(np.zeros(0, np.int32))
            n_chan.append(np.zeros(0, np.int32))
            values.append(np.zeros(0, np.float32))
            continue
        # Groups are runs of consecutive channels.
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [idx.size]])
        n_grp.append(starts.size)
        f_chan.append((idx[starts] + first).astype(np.int32))
        n_chan.append((ends - starts).astype(np.int32))
        values.append(val.astype(np.float32))
    cols = fits.ColDefs(
        [
            fits.Column(name="ENERG_LO", format="E", unit="keV", array=rmf.energ_lo),
            fits.Column(name="ENERG_HI", format="E", unit="keV", array=rmf.energ_hi),
            fits.Column(name="N_GRP", format="I", array=np.array(n_grp, dtype=np.int16)),
            fits.Column(name="F_CHAN", format="PJ()", array=np.array(f_chan, dtype=object)),
            fits.Column(name="N_CHAN", format="PJ()", array=np.array(n_chan, dtype=object)),
            fits.Column(name="MATRIX", format="PE()", array=np.array(values, dtype=object)),
        ]
    )
    mhdu = fits.BinTableHDU.from_columns(cols)
    h = mhdu.header
    h["EXTNAME"] = "MATRIX"
    _ogip_common(h, telescope, instrument)
    h["HDUCLAS1"] = "RESPONSE"
    h["HDUCLAS2"] = "RSP_MATRIX"
    h["HDUCLAS3"] = "REDIST"
    h["HDUVERS"] = "1.3.0"
    h["CHANTYPE"] = "PI"
    h["DETCHANS"] = rmf.n_channels
    h["LO_THRES"] = 0.0
    h["TLMIN4"] = first
    h["TLMAX4"] = first + rmf.n_channels - 1
    ecols = fits.ColDefs(
        [
            fits.Column(
                name="CHANNEL",
                format="J",
                array=np.arange(first, first + rmf.n_channels, dtype=np.int32),
            ),
            fits.Column(name="E_MIN", format="E", unit="keV", array=rmf.e_min),
            fits.Column(name="E_MAX", format="E", unit="keV", array=rmf.e_max),
        ]
    )
    ehdu = fits.BinTableHDU.from_columns(ecols)
    h = ehdu.header
    h["EXTNAME"] = "EBOUNDS"
    _ogip_common(h, telescope, instrument)
    h["HDUCLAS1"] = "RESPONSE"
    h["HDUCLAS2"] = "EBOUNDS"
    h["HDUVERS"] = "1.2.0"
    h["CHANTYPE"] = "PI"
    h["DETCHANS"] = rmf.n_channels
    h["TLMIN1"] = first
    h["TLMAX1"] = first + rmf.n_channels - 1
    path = Path(path)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), mhdu, ehdu]).writeto(tmp, checksum=True)
    return path


class PhaDirWriter:
    """Writes simulated spectra into a directory: ``<id>.pha``, ``<id>_bkg.pha``, shared
    ``response.arf`` / ``response.rmf`` (written once)."""

    def __init__(self, directory: str | Path, response: Response) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.response = response
        self.arf_name = "response.arf" if response.arf is not None else "none"
        self.rmf_name = "response.rmf"
        if response.arf is not None:
            write_arf(self.dir / self.arf_name, response.arf)
        write_rmf(self.dir / self.rmf_name, response.rmf)

    def pha_path(self, spec_id: str) -> Path:
        return self.dir / f"{spec_id}.pha"

    def write(
        self,
        spec_id: str,
        src_counts: np.ndarray,
        bkg_counts: np.ndarray,
        exposure_s: float,
        backscal_src: float,
        backscal_bkg: float,
        obsid: int = -1,
    ) -> None:
        """Write one source PHA and its background PHA (same exposure)."""
        first = self.response.rmf.first_channel
        bkg_name = f"{spec_id}_bkg.pha"
        extra = {"OBJECT": spec_id, "OBS_ID": str(obsid)}
        write_pha(
            self.dir / bkg_name, bkg_counts, exposure_s, backscal_bkg,
            background=True, respfile=self.rmf_name, ancrfile=self.arf_name,
            first_channel=first, extra=extra,
        )  # fmt: skip
        write_pha(
            self.pha_path(spec_id), src_counts, exposure_s, backscal_src,
            backfile=bkg_name, respfile=self.rmf_name, ancrfile=self.arf_name,
            first_channel=first, extra=extra,
        )  # fmt: skip

    def close(self) -> None:
        """Nothing buffered; present so callers can treat writers uniformly."""
