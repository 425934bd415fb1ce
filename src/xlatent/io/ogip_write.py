"""OGIP writers: type-I PHA spectra (OGIP/92-007), ARF and RMF (CAL/GEN/92-002), via astropy.

Files are written atomically (temporary file + rename). The RMF uses the standard compressed
layout: per energy row N_GRP, and variable-length F_CHAN / N_CHAN / MATRIX columns.
"""

from __future__ import annotations

import gzip
import io
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


def write_hdul(path: str | Path, hdul: fits.HDUList) -> Path:
    """Write ``hdul`` atomically with DATASUM/CHECKSUM; gzip-compressed when ``path`` ends
    ``.gz``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.name.endswith(".gz"):
            buf = io.BytesIO()
            hdul.writeto(buf, checksum=True)
            Path(tmp).write_bytes(gzip.compress(buf.getvalue(), compresslevel=6, mtime=0))
        else:
            hdul.writeto(tmp, checksum=True)
    return path


def pha_hdu(
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
    csc_columns: bool = False,
) -> fits.BinTableHDU:
    """An OGIP type-I ``SPECTRUM`` table HDU (integer COUNTS per PI channel, POISSERR = T).

    ``csc_columns``: also the CSC pha3 columns ``PI`` (the channel as a float) and
    ``COUNT_RATE`` (counts / EXPOSURE), as dmextract writes them."""
    counts = np.asarray(counts)
    if np.any(counts < 0) or not np.all(np.equal(np.mod(counts, 1), 0)):
        raise ValueError("PHA COUNTS must be non-negative integers")
    n = counts.size
    channel = np.arange(first_channel, first_channel + n, dtype=np.int32)
    columns = [fits.Column(name="CHANNEL", format="J", unit="channel", array=channel)]
    if csc_columns:
        columns.append(fits.Column(name="PI", format="D", unit="chan", array=channel * 1.0))
    columns.append(
        fits.Column(name="COUNTS", format="J", unit="count", array=counts.astype(np.int32))
    )
    if csc_columns:
        rate = counts / float(exposure_s)
        columns.append(fits.Column(name="COUNT_RATE", format="D", unit="count/s", array=rate))
    hdu = fits.BinTableHDU.from_columns(fits.ColDefs(columns))
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
    h["BACKFILE"] = (backfile, "background file")
    h["CORRFILE"] = ("none", "associated correction filename")
    h["RESPFILE"] = (respfile, "RMF file")
    h["ANCRFILE"] = (ancrfile, "ARF file")
    h["POISSERR"] = (True, "Poissonian errors to be assumed")
    h["SYS_ERR"] = (0.0, "no systematic error")
    h["GROUPING"] = (0, "no grouping of the data")
    h["QUALITY"] = (0, "no data quality information")
    if csc_columns:
        h["TOTCTS"] = (int(counts.sum()), "[count] Total counts")
    for key, value in (extra or {}).items():
        h[key] = value
    return hdu


def write_pha(
    path: str | Path,
    counts: np.ndarray,
    exposure_s: float,
    backscal: float = 1.0,
    **kwargs: object,
) -> Path:
    """Write an OGIP type-I PHA file (integer COUNTS per PI channel, POISSERR = T); keyword
    arguments as :func:`pha_hdu`."""
    hdu = pha_hdu(counts, exposure_s, backscal, **kwargs)  # type: ignore[arg-type]
    return write_hdul(path, fits.HDUList([fits.PrimaryHDU(), hdu]))


def write_csc_pha3(
    path: str | Path,
    src_counts: np.ndarray,
    bkg_counts: np.ndarray,
    exposure_s: float,
    backscal_src: float,
    backscal_bkg: float,
    *,
    ancrfile: str,
    respfile: str,
    first_channel: int = 1,
    tstart: float = 0.0,
    extra: dict[str, object] | None = None,
) -> Path:
    """Write a spectrum in the CSC ``pha3`` layout: PRIMARY, ``SPECTRUM`` (EXTVER 1,
    HDUCLAS2 TOTAL), ``GTI``, ``SPECTRUM`` (EXTVER 2, HDUCLAS2 BKG) in one file; BACKFILE of
    the source spectrum names the file itself, the background HDU names no files.

    ``ancrfile``/``respfile``: sibling ARF/RMF file names; ``extra``: keywords for every
    header (OBS_ID, OBI_NUM, REGIONID, CYCLE, OBJECT, ...). Gzip-compressed when ``path``
    ends ``.gz``; BACKFILE (like the archive's gzipped files) then names the file without
    ``.gz``."""
    path = Path(path)
    extra = dict(extra or {})
    primary = fits.PrimaryHDU()
    for key, value in extra.items():
        primary.header[key] = value
    common = {"first_channel": first_channel, "extra": extra, "csc_columns": True}
    src = pha_hdu(
        src_counts, exposure_s, backscal_src, backfile=path.name.removesuffix(".gz"),
        respfile=respfile, ancrfile=ancrfile, **common,
    )  # fmt: skip
    bkg = pha_hdu(bkg_counts, exposure_s, backscal_bkg, background=True, **common)
    for i, hdu in ((1, src), (2, bkg)):
        hdu.header["EXTVER"] = i
        hdu.header["HDUNAME"] = f"SPECTRUM{i}"
    gti = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="START", format="D", unit="s", array=[tstart]),
            fits.Column(name="STOP", format="D", unit="s", array=[tstart + float(exposure_s)]),
        ]
    )
    gti.header["EXTNAME"] = "GTI"
    gti.header["HDUNAME"] = "GTI"
    return write_hdul(path, fits.HDUList([primary, src, gti, bkg]))


def write_arf(
    path: str | Path,
    arf: ARF,
    telescope: str = "CHANDRA",
    instrument: str = "ACIS",
    *,
    extra: dict[str, object] | None = None,
) -> Path:
    """Write an OGIP ARF (``SPECRESP`` extension, cm^2 on ENERG_LO/ENERG_HI in keV).

    ``extra``: keywords for the primary and SPECRESP headers (such as OBS_ID)."""
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
    primary = fits.PrimaryHDU()
    for key, value in (extra or {}).items():
        h[key] = primary.header[key] = value
    return write_hdul(path, fits.HDUList([primary, hdu]))


def write_rmf(
    path: str | Path,
    rmf: RMF,
    telescope: str = "CHANDRA",
    instrument: str = "ACIS",
    *,
    extname: str = "MATRIX",
    extra: dict[str, object] | None = None,
) -> Path:
    """Write an OGIP RMF: ``MATRIX`` (N_GRP, variable-length F_CHAN/N_CHAN/MATRIX) + ``EBOUNDS``.

    ``extname``: name of the matrix extension (the CSC's rmf3 files use ``RSP_MATRIX``);
    ``extra``: keywords for the primary and matrix headers (such as OBS_ID)."""
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
    h["EXTNAME"] = extname
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
    primary = fits.PrimaryHDU()
    for key, value in (extra or {}).items():
        mhdu.header[key] = primary.header[key] = value
    return write_hdul(path, fits.HDUList([primary, mhdu, ehdu]))


class PhaDirWriter:
    """Writes simulated spectra into a directory: ``<id>.pha`` and ``<id>_bkg.pha`` with
    ANCRFILE/RESPFILE naming their response files.

    With a ``response``, one shared ``response.arf`` / ``response.rmf`` (written at once).
    Otherwise each :meth:`write` names its own: an ARF of its own (``<id>.arf``) or a shared
    one (``arf_name``), and an RMF (``rmf_name``); a shared file is written the first time
    its name is used."""

    def __init__(self, directory: str | Path, response: Response | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.response = response
        self.arf_name = "none"
        self.rmf_name = "response.rmf"
        self._written: dict[str, object] = {}
        if response is not None:
            if response.arf is not None:
                self.arf_name = self._shared("response.arf", response.arf)
            self._shared(self.rmf_name, response.rmf)

    def _shared(self, name: str, item: ARF | RMF) -> str:
        """Write ``item`` under ``name`` once; a second, different item may not reuse it."""
        if name in self._written:
            if self._written[name] is not item:
                raise ValueError(f"{name} is already written for another response")
            return name
        if isinstance(item, ARF):
            write_arf(self.dir / name, item)
        else:
            write_rmf(self.dir / name, item)
        self._written[name] = item
        return name

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
        *,
        arf: ARF | None = None,
        arf_name: str | None = None,
        rmf: RMF | None = None,
        rmf_name: str | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        """Write one source PHA and its background PHA (same exposure).

        ``arf``: this spectrum's ARF, written as ``<spec_id>.arf``, or shared as ``arf_name``;
        ``rmf``: its RMF, shared as ``rmf_name``; neither: the writer's ``response``.
        ``extra``: more header keywords (DETNAM, DATE-OBS, ...)."""
        arf_file = self.arf_name
        if arf is not None:
            if arf_name is None:
                arf_file = f"{spec_id}.arf"
                write_arf(self.dir / arf_file, arf)
            else:
                arf_file = self._shared(arf_name, arf)
        rmf_file = self.rmf_name
        if rmf is not None:
            if rmf_name is None:
                raise ValueError("rmf needs rmf_name")
            rmf_file = self._shared(rmf_name, rmf)
        elif self.response is None:
            raise ValueError("no response: give rmf (and arf) for each spectrum")
        first = (rmf if rmf is not None else self.response.rmf).first_channel  # type: ignore[union-attr]
        bkg_name = f"{spec_id}_bkg.pha"
        extra = {"OBJECT": spec_id, "OBS_ID": str(obsid), **(extra or {})}
        write_pha(
            self.dir / bkg_name, bkg_counts, exposure_s, backscal_bkg,
            background=True, respfile=rmf_file, ancrfile=arf_file,
            first_channel=first, extra=extra,
        )  # fmt: skip
        write_pha(
            self.pha_path(spec_id), src_counts, exposure_s, backscal_src,
            backfile=bkg_name, respfile=rmf_file, ancrfile=arf_file,
            first_channel=first, extra=extra,
        )  # fmt: skip

    def close(self) -> None:
        """Nothing buffered; present so callers can treat writers uniformly."""
