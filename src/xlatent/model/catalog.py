"""Latent catalogues: ``spec_id`` + the set's meta columns + ``latent_0 ... latent_{d-1}``,
then (when given) ``latent_0_err ... latent_{d-1}_err``, ``ood_score`` and ``ood_flag``.

Parquet by default; FITS (binary table) when the path ends in ``.fits``/``.fit``/``.fits.gz``
or ``fmt="fits"``. Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlatent.core import InputError, SpectrumSet, atomic_path
from xlatent.core.vocabulary import (
    LATENT_PREFIX,
    OOD_FLAG,
    OOD_SCORE,
    latent_err_name,
    latent_name,
)
from xlatent.core.vocabulary import latent_columns as latent_columns  # re-exported

_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz")


def latent_catalog(
    spectrum_set: SpectrumSet,
    latents: np.ndarray,
    errors: np.ndarray | None = None,
    ood_score: np.ndarray | None = None,
    ood_flag: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per spectrum: ``spec_id``, the other meta columns, the latents, then their
    errors (``latent_<i>_err``), ``ood_score`` and ``ood_flag`` when given."""
    n = len(spectrum_set)
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] != n:
        raise ValueError(f"latents must be (n={n}, d); got {z.shape}")
    meta = spectrum_set.meta.reset_index(drop=True)
    ours = {OOD_SCORE, OOD_FLAG}
    cols = [
        "spec_id",
        *[c for c in meta.columns
          if c != "spec_id" and not c.startswith(LATENT_PREFIX) and c not in ours],
    ]  # fmt: skip
    df = meta[cols].copy()
    d = z.shape[1]
    parts = [df, pd.DataFrame(z, columns=[latent_name(i) for i in range(d)])]
    if errors is not None:
        e = np.asarray(errors, dtype=np.float64)
        if e.shape != z.shape:
            raise ValueError(f"errors must have the latents' shape {z.shape}; got {e.shape}")
        parts.append(pd.DataFrame(e, columns=[latent_err_name(i) for i in range(d)]))
    for name, col, dtype in ((OOD_SCORE, ood_score, np.float64), (OOD_FLAG, ood_flag, bool)):
        if col is not None:
            arr = np.asarray(col, dtype=dtype)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have one value per spectrum ({n}); got {arr.shape}")
            parts.append(pd.DataFrame({name: arr}))
    return pd.concat(parts, axis=1)


def _is_fits(path: Path, fmt: str | None) -> bool:
    if fmt is not None:
        if fmt not in ("parquet", "fits"):
            raise ValueError(f"format must be 'parquet' or 'fits', not {fmt!r}")
        return fmt == "fits"
    return path.name.lower().endswith(_FITS_SUFFIXES)


def write_latents(df: pd.DataFrame, path: str | Path, fmt: str | None = None) -> Path:
    """Write a latent catalogue to parquet or FITS (by suffix or ``fmt``), atomically."""
    path = Path(path)
    if _is_fits(path, fmt):
        from astropy.table import Table

        out = df.copy()
        for col in out.columns:
            if out[col].dtype == object:
                # FITS has no object columns; unknowns are already "" in a SpectrumSet's meta.
                out[col] = out[col].fillna("").astype(str)
        table = Table.from_pandas(out)
        table.meta["EXTNAME"] = "LATENTS"
        with atomic_path(path) as tmp:
            table.write(tmp, format="fits", overwrite=True)
    else:
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    return path


def read_latents(path: str | Path) -> pd.DataFrame:
    """Read a catalogue written by :func:`write_latents` (parquet or FITS)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if _is_fits(path, None):
        from astropy.table import Table

        df = Table.read(path, format="fits").to_pandas()
        for col in df.columns:
            if df[col].dtype == object:
                df[col] = df[col].map(lambda v: v.decode() if isinstance(v, bytes) else v)
        return df
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise InputError(path, f"not a parquet latent catalogue ({type(exc).__name__})") from None
