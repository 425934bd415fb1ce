"""Ingest spectra from files, directories and globs into one SpectrumSet.

One reader per format behind one entry point (like astropy's ``Table.read`` registry):
OGIP PHA (with BACKFILE/ANCRFILE/RESPFILE), Multimodal Universe Chandra HDF5, and existing
SpectrumSet files. A bad file is skipped with a one-line reason; nothing else is lost.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.spectrumset import FORMAT_NAME
from xlatent.io.pha import GridMapper, load_pha_spectrum, parse_csc_name
from xlatent.io.response import DEFAULT_CACHE, ResponseCache

_PHA_PATTERNS = ("*_pha3.fits", "*_pha3.fits.gz", "*.pi", "*.pi.gz", "*.pha", "*.pha.gz")
_NOT_SOURCE = ("_bg.", "_bkg.", "_back.", ".bkg", "bkg.pi", "_bg.pi")


@dataclass
class IngestResult:
    """What an ingest produced: the set, and each skipped file with its reason."""

    spectrum_set: SpectrumSet | None
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_ingested(self) -> int:
        return 0 if self.spectrum_set is None else len(self.spectrum_set)

    def summary(self) -> str:
        lines = [f"ingested {self.n_ingested} spectra, skipped {len(self.skipped)} files"]
        lines += [f"  skipped {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, directories (recursive) and globs into candidate spectrum files.

    Directories contribute PHA source files (``*_pha3.fits[.gz]``, ``*.pi``, ``*.pha``) and
    HDF5 files; files named as a background (``*_bg.pi``, ``*_bkg.pha``) are left out (and
    :func:`ingest_paths` drops any other file that is only a BACKFILE of another).
    """
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            for pattern in (*_PHA_PATTERNS, "*.h5", "*.hdf5"):
                found.extend(
                    q for q in p.rglob(pattern) if not any(t in q.name.lower() for t in _NOT_SOURCE)
                )
        elif p.is_file():
            found.append(p)
        else:
            matches = sorted(glob.glob(str(item), recursive=True))
            if matches:
                found.extend(Path(m) for m in matches if Path(m).is_file())
            else:
                missing.append((str(item), "no such file, directory or glob match"))
    unique = sorted({f.resolve(): f for f in found}.values(), key=lambda f: str(f))
    return unique, missing


def _drop_backgrounds(rows: list, skipped: list[tuple[str, str]]) -> list:
    """Remove files that are only another file's BACKFILE (not sources themselves).

    A file named by another spectrum's BACKFILE is a pure background when it names no
    background of its own; a CSC pha3 names itself, so it stays a source. Done after reading,
    so every file is opened once.
    """
    targets = {
        Path(r.meta["bkg_file"]).resolve()
        for r in rows
        if r.meta["bkg_file"]
        and Path(r.meta["bkg_file"]).resolve() != Path(r.meta["source_file"]).resolve()
    }
    if not targets:
        return rows
    skipped[:] = [(p, why) for p, why in skipped if Path(p).resolve() not in targets]
    return [
        r
        for r in rows
        if not (Path(r.meta["source_file"]).resolve() in targets and not r.meta["bkg_file"])
    ]


def ingest_paths(
    paths: str | Path | Sequence[str | Path],
    grid: EnergyGrid | None = None,
    progress: bool = True,
    cache: ResponseCache | None = DEFAULT_CACHE,
) -> IngestResult:
    """Ingest spectra into one SpectrumSet on ``grid`` (default :meth:`EnergyGrid.default`).

    Every file that cannot be used is skipped with a one-line reason in
    ``result.skipped``; the rest are kept, in file-name order.
    """
    grid = grid or EnergyGrid.default()
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files, skipped = discover(paths)
    mapper = GridMapper(grid, cache)
    rows = []
    sets: list[SpectrumSet] = []
    bar = _progress(files, progress)
    for f in bar:
        try:
            kind = sniff(f)
            if kind == "pha":
                rows.append(load_pha_spectrum(f, mapper))
            elif kind == "spectrumset":
                s = SpectrumSet.read(f)
                if s.grid != grid:
                    raise InputError(f, f"SpectrumSet on another grid ({s.grid})")
                sets.append(s)
            elif kind == "mmu":
                sets.append(read_mmu_hdf5(f, grid))
            else:
                raise InputError(f, "neither a FITS PHA spectrum nor a known HDF5 layout")
        except InputError as exc:
            skipped.append((exc.path, exc.reason))
    rows = _drop_backgrounds(rows, skipped)
    if rows:
        sets.insert(0, _stack(rows, grid))
    if not sets:
        return IngestResult(None, skipped)
    s = SpectrumSet.concat(sets) if len(sets) > 1 else sets[0]
    s.meta["spec_id"] = _unique_ids(s.meta)
    s.update_band_columns()
    s.provenance = [
        *s.provenance,
        {"step": "ingest", "n": len(s), "skipped": len(skipped), "grid_bins": grid.n_bins},
    ]
    return IngestResult(s, skipped)


#: ``xlatent.ingest`` is this function.
ingest = ingest_paths


def sniff(path: Path) -> str:
    """'pha', 'spectrumset', 'mmu' or 'unknown', from the file's first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror})") from None
    if head[:2] == b"\x1f\x8b" or head.startswith(b"SIMPLE"):
        return "pha"
    if head.startswith(b"\x89HDF"):
        try:
            with h5py.File(path, "r") as f:
                if f.attrs.get("format") == FORMAT_NAME:
                    return "spectrumset"
                if "spectrum_flux" in f and "spectrum_ene_lo" in f:
                    return "mmu"
        except OSError as exc:
            raise InputError(path, f"damaged HDF5 file ({exc})") from None
    return "unknown"


def _stack(rows: list, grid: EnergyGrid) -> SpectrumSet:
    meta = pd.DataFrame([r.meta for r in rows])
    return SpectrumSet(
        grid=grid,
        counts=np.stack([r.counts for r in rows]),
        background=np.stack([r.background for r in rows]),
        exposure_s=np.array([r.exposure_s for r in rows]),
        effective_area_cm2=np.stack([r.effective_area_cm2 for r in rows]),
        meta=meta,
    )


def _unique_ids(meta: pd.DataFrame) -> list[str]:
    """``OBSID_OBI_REGION`` for CSC detections, else the file stem; made unique."""
    ids, seen = [], {}
    for _, row in meta.iterrows():
        if row.get("spec_id") and not str(row["spec_id"]).startswith("spec"):
            base = str(row["spec_id"])
        elif int(row["obsid"]) >= 0 and int(row["region_id"]) >= 0:
            base = f"{int(row['obsid'])}_{int(row['obi']):03d}_{int(row['region_id']):04d}"
        else:
            base = Path(str(row["source_file"])).name.split(".")[0] or "spec"
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}_{n}")
    return ids


def _progress(items: list, enabled: bool):  # noqa: ANN202
    if not enabled or len(items) < 2:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="ingest", unit="file")


# --------------------------------------------------------------------- Multimodal Universe
#: MMU catalogue columns copied into meta under their CSC names.
_MMU_ID = {"name": "name", "obsid": "obsid", "obi": "obi", "region_id": "region_id"}


def read_mmu_hdf5(path: str | Path, grid: EnergyGrid | None = None) -> SpectrumSet:
    """A Multimodal Universe Chandra HDF5 file (one row per source) onto ``grid``.

    The MMU stores Sherpa's background-subtracted, grouped spectrum as ``spectrum_flux``
    (counts s^-1 keV^-1) on ``spectrum_ene_lo``/``spectrum_ene_hi`` (keV) with
    ``spectrum_flux_err``, and no exposure or ARF. Counts are flux x width x exposure, with the
    exposure taken from an ``exposure``/``livetime`` column when there is one, else estimated
    per source from the Poisson errors (flux / (err^2 x width), the median over bins), which is
    exact for background-free grouped counts. The spectra are already net, so ``background``
    is 0, and the effective area is unknown (1 cm^2, flagged by ``effective_area_known``).
    """
    path = Path(path)
    grid = grid or EnergyGrid.default()
    from xlatent.core.grid import regrid_counts

    try:
        with h5py.File(path, "r") as f:
            n = len(f["spectrum_flux"])
            cols = {}
            for key in f:
                ds = f[key]
                if not isinstance(ds, h5py.Dataset) or key.startswith("spectrum_"):
                    continue
                if ds.shape[:1] != (n,) or ds.ndim != 1 or ds.dtype.kind == "O":
                    continue
                values = ds[:]
                if values.dtype.kind == "S":
                    values = np.char.decode(values, "utf-8")
                cols[key] = values
            exposure_col = next((c for c in ("exposure", "livetime", "exptime") if c in cols), None)
            counts = np.zeros((n, grid.n_bins))
            exposure = np.zeros(n)
            for i in range(n):
                lo = np.asarray(f["spectrum_ene_lo"][i], dtype=np.float64)
                hi = np.asarray(f["spectrum_ene_hi"][i], dtype=np.float64)
                flux = np.asarray(f["spectrum_flux"][i], dtype=np.float64)
                err = np.asarray(f["spectrum_flux_err"][i], dtype=np.float64)
                width = hi - lo
                if exposure_col is not None:
                    t = float(cols[exposure_col][i])
                else:
                    ok = (flux > 0) & (err > 0) & (width > 0)
                    t = float(np.median(flux[ok] / (err[ok] ** 2 * width[ok]))) if ok.any() else 0
                if not np.isfinite(t) or t <= 0:
                    raise InputError(path, f"row {i}: cannot determine an exposure")
                exposure[i] = t
                counts[i] = regrid_counts(np.clip(flux, 0, None) * width * t, lo, hi, grid)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a Multimodal Universe Chandra file ({exc})") from None
    meta = pd.DataFrame(cols)
    for key in ("obsid", "obi", "region_id"):
        if key in meta:
            meta[key] = pd.to_numeric(meta[key], errors="coerce").fillna(-1).astype(int)
    meta["source_file"] = str(path)
    meta["effective_area_known"] = False
    meta["exposure_estimated"] = exposure_col is None
    # Catalogue hardness ratios keep their CSC values under a catalogue prefix; the set's own
    # count-based ones are recomputed from the spectra.
    for hr in ("hard_hm", "hard_hs", "hard_ms"):
        if hr in meta:
            meta = meta.rename(columns={hr: f"csc_{hr}"})
    return SpectrumSet(
        grid=grid,
        counts=counts,
        background=np.zeros_like(counts),
        exposure_s=exposure,
        effective_area_cm2=np.ones_like(counts),
        meta=meta,
    ).update_band_columns()


def read_spectra(
    paths: str | Path | Sequence[str | Path], grid: EnergyGrid | None = None, **kwargs
) -> SpectrumSet:
    """One entry point for every format; raises if nothing could be read."""
    result = ingest_paths(paths, grid=grid, **kwargs)
    if result.spectrum_set is None:
        reasons = "; ".join(f"{p}: {r}" for p, r in result.skipped[:3])
        raise InputError(str(paths), f"nothing could be ingested ({reasons})")
    return result.spectrum_set


__all__ = [
    "IngestResult",
    "discover",
    "ingest",
    "ingest_paths",
    "parse_csc_name",
    "read_mmu_hdf5",
    "read_spectra",
    "sniff",
]
