"""Labelled source tables: the CSC training set ``TD.csv`` (Yang et al. 2022) and its kin.

``TD.csv`` lists 2,941 CSC sources with a CSC name (``CSCv2_name``), a class (``True_Class``,
one of :data:`xlatent.core.vocabulary.CLASSES`) and band energy fluxes ``Fs``, ``Fm``,
``Fh``, ``Fb`` (erg cm^-2 s^-1). Tables written by xlatent itself carry ``name`` and
``source_class`` instead. :func:`read_td` reads either; :func:`class_column` and
:func:`labelled` are its steps, for a table already in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlatent.core.errors import InputError

#: Label columns looked for, in order (lower case): TD.csv's, then xlatent's.
CLASS_COLUMNS = ("true_class", "source_class")
#: CSC-name columns looked for, in order (lower case): TD.csv's, then xlatent's.
NAME_COLUMNS = ("cscv2_name", "name")
#: TD.csv's band energy-flux columns (lower case), keyed by CSC band code.
BAND_FLUX_COLUMNS = {"s": "fs", "m": "fm", "h": "fh", "b": "fb"}


def class_column(frame: pd.DataFrame, wanted: str | None = None) -> str | None:
    """The label column of ``frame`` (lower-case columns): ``wanted``, else the first found."""
    candidates = [wanted.lower()] if wanted else list(CLASS_COLUMNS)
    return next((c for c in candidates if c in frame), None)


def clean_classes(values: pd.Series) -> pd.Series:
    """Class labels stripped and upper-cased; "" where missing."""
    return values.fillna("").astype(str).str.strip().str.upper()


def clean_names(values: pd.Series) -> pd.Series:
    """CSC names with runs of white space made single spaces and no padding; "" where missing."""
    return values.fillna("").astype(str).map(lambda s: " ".join(s.split()))


def labelled(frame: pd.DataFrame, found: str) -> pd.DataFrame:
    """``frame`` (lower-case columns) with ``source_class`` and ``name`` set from the originals.

    ``source_class`` is :func:`clean_classes` of column ``found``; ``name`` (where the table
    has a CSC name, :data:`NAME_COLUMNS`) is :func:`clean_names` of it. Every other column is
    kept; the label column used is in ``attrs["class_column"]``.
    """
    out = frame.copy()
    out["source_class"] = clean_classes(frame[found]).to_numpy(dtype=object)
    name = next((c for c in NAME_COLUMNS if c in frame), None)
    if name is not None:
        out["name"] = clean_names(frame[name]).to_numpy(dtype=object)
    out.attrs["class_column"] = found
    return out


def read_td(path: str | Path, class_col: str | None = None) -> pd.DataFrame:
    """A labelled source table: ``TD.csv``, or any table with ``name`` and ``source_class``.

    Read by :func:`xlatent.io.csc.query.read_table` (CSV, TSV, Parquet, FITS, VOTable; column
    names lower case), then :func:`labelled` with the label column ``class_col`` (default:
    ``True_Class``, else ``source_class``).
    """
    from xlatent.io.csc.query import read_table

    frame = read_table(path)
    found = class_column(frame, class_col)
    if found is None:
        raise InputError(path, "needs columns CSCv2_name and True_Class (or name and source_class)")
    return labelled(frame, found)


def band_fluxes(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """TD's band energy fluxes as float arrays, keyed by CSC band code (lower-case columns)."""
    return {
        band: pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        for band, col in BAND_FLUX_COLUMNS.items()
    }


__all__ = [
    "BAND_FLUX_COLUMNS",
    "CLASS_COLUMNS",
    "NAME_COLUMNS",
    "band_fluxes",
    "class_column",
    "clean_classes",
    "clean_names",
    "labelled",
    "read_td",
]
