"""Format ``mmu``: Multimodal Universe Chandra HDF5 files (one row per source).

Directory scans pick these up (``*.h5``/``*.hdf5`` files identified as MMU).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.core.grid import regrid_counts
from xlatent.io._hdf5 import probe
from xlatent.io.fastfits import FileKindError, check_regular
from xlatent.io.pha import MAX_EXPOSURE_S

NAME = "mmu"
#: Most rows a Multimodal Universe file may hold (a hostile header could claim billions).
MAX_ROWS = 10_000_000


def identify(path: Path, head: bytes) -> bool:
    """An HDF5 file with the MMU spectrum datasets."""
    return probe(path, head, lambda f: "spectrum_flux" in f and "spectrum_ene_lo" in f)


def read(path: str | Path, grid: EnergyGrid | None = None, **_options: object) -> SpectrumSet:
    """A Multimodal Universe Chandra HDF5 file (one row per source) onto ``grid``.

    The MMU Chandra files (``scripts/chandra`` of the MultimodalUniverse project) hold, per
    detection, Sherpa's background-*subtracted*, grouped data plot as ``spectrum_flux``
    (counts s^-1 keV^-1, the ARF *not* divided out) on ``spectrum_ene_lo``/``spectrum_ene_hi``
    (keV) with ``spectrum_flux_err``, and catalogue columns (``name``, ``obsid``, ``obi``,
    ``hard_hm/hs/ms``, ``flux_aper_b``, ``flux_significance_b``, ``var_prob_b``,
    ``var_index_b``, ...); no exposure, ARF or background spectrum. What the file has is
    carried: every 1-D column goes to ``meta`` under its own name (the CSC's photon-flux
    ``hard_*`` keep their names, beside the count ratios ``hr_counts_*`` computed here), and
    the exposure is taken from an ``exposure``/``livetime``/``exptime`` column when there is
    one (``exposure_estimated`` False), else estimated per source from the Poisson errors
    (flux / (err^2 x width), the median over bins; exact for background-free grouped counts).
    Counts are flux x width x exposure (negative net bins clipped to 0). What the file lacks
    is flagged, not invented: ``background`` is 0 with ``background_known`` False (the counts
    are already net), and the effective area is 1 cm^2 with ``effective_area_known`` False.
    Training with the Poisson loss refuses such rows (the deviance needs the source-region
    counts, the background and the area); ``loss="mse"`` works on them.
    """
    path = Path(path)
    grid = grid or EnergyGrid.default()
    try:
        size = check_regular(path).st_size
    except FileKindError as exc:
        raise InputError(path, str(exc)) from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        with h5py.File(path, "r") as f:
            n = len(f["spectrum_flux"])
            if n > min(MAX_ROWS, size):  # every row takes at least a byte of the file
                raise InputError(path, f"{n} rows in a {size}-byte file")
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
                if not (lo.shape == hi.shape == flux.shape == err.shape and lo.ndim == 1):
                    raise InputError(path, f"row {i}: spectrum arrays differ in length")
                if not np.all(np.isfinite(lo) & np.isfinite(hi)) or np.any(hi <= lo):
                    raise InputError(path, f"row {i}: energy bins not finite or not increasing")
                if lo.size > 1 and np.any(lo[1:] < hi[:-1]):
                    raise InputError(path, f"row {i}: energy bins overlap or are out of order")
                if not np.all(np.isfinite(flux)):
                    raise InputError(path, f"row {i}: spectrum_flux is not finite")
                width = hi - lo
                if exposure_col is not None:
                    t = float(cols[exposure_col][i])
                else:
                    ok = (flux > 0) & (err > 0) & (width > 0)
                    t = float(np.median(flux[ok] / (err[ok] ** 2 * width[ok]))) if ok.any() else 0
                if not np.isfinite(t) or t <= 0 or t > MAX_EXPOSURE_S:
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
    meta["background_known"] = False
    meta["exposure_estimated"] = exposure_col is None
    return SpectrumSet(
        grid=grid,
        counts=counts,
        background=np.zeros_like(counts),
        exposure_s=exposure,
        effective_area_cm2=np.ones_like(counts),
        meta=meta,
    ).update_band_columns()
