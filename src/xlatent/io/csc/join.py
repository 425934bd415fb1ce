"""Join CSC catalogue columns and external class labels onto a SpectrumSet's ``meta``.

Catalogue rows match spectra by the detection key ``(obsid, obi, region_id)``; labels match
by CSC source name (``2CXO J...``, compared without case and extra spaces).

Catalogue columns keep their CSC names: ``hard_hm``, ``hard_hs``, ``hard_ms`` are the CSC's
photon-flux hardness ratios, distinct from the count ratios ``hr_counts_*`` computed from the
spectra. ``powlaw_nh`` stays in the CSC's unit (10^20 cm^-2) and is also written converted as
``powlaw_nh_1e22`` (10^22 cm^-2, the unit of the simulator's ``truth_nh_1e22``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.errors import InputError
from xlatent.core.spectrumset import SpectrumSet
from xlatent.core.vocabulary import CLASSES as SOURCE_CLASSES

KEY = ("obsid", "obi", "region_id")
#: Catalogue columns that fill the meta column of the same name (CSC names in both).
_FILL_SAME = ("name", "var_prob_b", "var_index_b")
#: Catalogue columns whose meta namesake is computed from the spectra: kept as ``csc_<col>``.
_PREFIX = "csc_"
#: The CSC's unit of ``powlaw_nh`` (master source table), in cm^-2.
CSC_NH_UNIT_CM2 = 1e20
#: A set written before the count ratios were renamed stored them under the CSC names.
_LEGACY_COUNT_RATIOS = {"hard_hm": "hr_counts_hm", "hard_hs": "hr_counts_hs",
                        "hard_ms": "hr_counts_ms"}  # fmt: skip


def nh_scale_to_1e22(units: dict[str, str]) -> float:
    """Factor from the catalogue's ``powlaw_nh`` to 10^22 cm^-2: from its declared unit when
    the catalogue carries one (the service's VOTable FIELD, a FITS TUNIT), else the CSC's
    documented 10^20 cm^-2."""
    import astropy.units as u

    unit = units.get("powlaw_nh") if units else None
    if unit:
        try:
            return float(u.Unit(unit).to(u.Unit("1e22 cm-2")))
        except (ValueError, u.UnitsError):
            pass  # not a column density: fall back to the documented unit
    return CSC_NH_UNIT_CM2 / 1e22


def normalize_name(name: Any) -> str:
    """A CSC name in canonical form for matching: upper case, single spaces, no padding."""
    if name is None or (isinstance(name, float) and np.isnan(name)):
        return ""
    text = name.decode() if isinstance(name, bytes) else str(name)
    return " ".join(text.split()).upper()


def _catalog_frame(catalog: Any) -> pd.DataFrame:
    if isinstance(catalog, (str, Path)):
        from xlatent.io.csc.query import read_catalog

        return read_catalog(catalog)
    if isinstance(catalog, pd.DataFrame):
        frame = catalog.copy()
    else:  # an astropy Table
        from xlatent.io.csc.query import table_to_frame

        frame = table_to_frame(catalog)
    frame.columns = [str(c).lower() for c in frame.columns]
    missing = [k for k in KEY if k not in frame]
    if missing:
        raise ValueError(f"catalogue lacks column(s) {', '.join(missing)}")
    for k in KEY:
        frame[k] = pd.to_numeric(frame[k], errors="coerce").fillna(-1).astype(np.int64)
    return frame


def join_catalog(
    spectrum_set: SpectrumSet,
    catalog_table: pd.DataFrame | Any,
    labels: pd.DataFrame | None = None,
) -> SpectrumSet:
    """A copy of ``spectrum_set`` with catalogue columns (and labels) joined onto ``meta``.

    * Catalogue rows match by ``(obsid, obi, region_id)``; when several rows share a key
      (a detection associated with more than one master source) the first is used and the
      number of such keys is recorded in the provenance.
    * ``name``, ``var_prob_b`` and ``var_index_b`` fill the meta columns of the same name
      where the catalogue has a value. Other catalogue columns are added under their own
      (CSC) name, e.g. ``hard_hm`` beside the count ratio ``hr_counts_hm`` computed from the
      spectrum, or as ``csc_<col>`` where meta already has that column. Unmatched spectra
      get NaN/"". A set whose meta still has count ratios under ``hard_*`` (written before
      the rename: no ``hr_counts_*``) has them renamed to ``hr_counts_*`` first.
    * ``powlaw_nh`` is also written as ``powlaw_nh_1e22``, converted from the unit the
      catalogue declares (else the CSC's documented 10^20 cm^-2).
    * ``labels`` (``name``, ``source_class``; see :func:`read_labels`) set ``source_class``
      by CSC name; spectra without a matching label keep theirs.

    Arrays are shared with the input set, ``meta`` is a new table.
    """
    catalog = _catalog_frame(catalog_table)
    if "powlaw_nh" in catalog and "powlaw_nh_1e22" not in catalog:
        nh = pd.to_numeric(catalog["powlaw_nh"], errors="coerce")
        catalog["powlaw_nh_1e22"] = nh * nh_scale_to_1e22(catalog.attrs.get("units", {}))
    meta = spectrum_set.meta.copy()
    if not any(c in meta for c in _LEGACY_COUNT_RATIOS.values()):
        meta = meta.rename(columns=_LEGACY_COUNT_RATIOS)
    n_ambiguous = int(catalog.duplicated(list(KEY)).sum())
    catalog = catalog.drop_duplicates(list(KEY), keep="first")
    keys = meta[list(KEY)].apply(pd.to_numeric, errors="coerce").fillna(-1).astype(np.int64)
    valid = (keys >= 0).all(axis=1).to_numpy()
    idx = pd.MultiIndex.from_frame(catalog[list(KEY)])
    pos = idx.get_indexer(pd.MultiIndex.from_frame(keys))
    pos[~valid] = -1
    matched = pos >= 0
    take = np.where(matched, pos, 0)

    for col in catalog.columns:
        if col in KEY:
            continue
        values = catalog[col].to_numpy()[take] if len(catalog) else np.full(len(meta), np.nan)
        if col in _FILL_SAME:
            have = _has_value(values) & matched
            if col not in meta:
                meta[col] = _empty_like(values, len(meta))
            target = meta[col].to_numpy(dtype=object if col == "name" else None, copy=True)
            if col == "name":
                target = np.array([str(v) for v in target], dtype=object)
                target[have] = [str(v).strip() for v in values[have]]
                meta[col] = target
            else:
                target = target.astype(np.float64)
                target[have] = values[have].astype(np.float64)
                meta[col] = target
            continue
        out = col if col not in meta else f"{_PREFIX}{col}"
        filled = _empty_like(values, len(meta))
        filled[matched] = values[matched]
        meta[out] = filled

    n_labelled = 0
    if labels is not None:
        lab = labels.copy()
        if "name" not in lab or "source_class" not in lab:
            raise ValueError("labels need the columns 'name' and 'source_class'")
        lab["_key"] = lab["name"].map(normalize_name)
        lab = lab[(lab["_key"] != "") & (lab["source_class"].astype(str).str.strip() != "")]
        lookup = lab.drop_duplicates("_key", keep="first").set_index("_key")["source_class"]
        names = meta["name"].map(normalize_name)
        found = names.map(lookup)
        has = found.notna() & (names != "")
        classes = meta["source_class"].astype(object).to_numpy(copy=True)
        classes[has.to_numpy()] = found[has].astype(str).str.strip().to_numpy()
        meta["source_class"] = classes
        n_labelled = int(has.sum())

    out = SpectrumSet(
        grid=spectrum_set.grid,
        counts=spectrum_set.counts,
        background=spectrum_set.background,
        exposure_s=spectrum_set.exposure_s,
        effective_area_cm2=spectrum_set.effective_area_cm2,
        meta=meta,
        expected_counts=spectrum_set.expected_counts,
        provenance=list(spectrum_set.provenance),
    )
    out.add_provenance(
        "join_catalog",
        n_matched=int(matched.sum()),
        n_unmatched=int((~matched).sum()),
        n_ambiguous_keys=n_ambiguous,
        n_labelled=n_labelled,
    )
    return out


def _has_value(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "fc":
        return ~np.isnan(values)
    return np.array([v is not None and str(v).strip() not in ("", "nan") for v in values])


def _empty_like(values: np.ndarray, n: int) -> np.ndarray:
    kind = values.dtype.kind
    if kind in "iub":
        return np.full(n, np.nan)  # unmatched rows become NaN (float)
    if kind in "fc":
        return np.full(n, np.nan, dtype=values.dtype)
    return np.full(n, "", dtype=object)


def read_labels(path: str | Path) -> pd.DataFrame:
    """External labels as a table with ``name`` and ``source_class``.

    Understands the CSC training set ``TD.csv`` (``CSCv2_name``, ``True_Class``) and any table
    that already has ``name`` and ``source_class`` columns (read by
    :func:`xlatent.io.csc.td.read_td`). Rows without a name or class are dropped; a name
    listed with two different classes is dropped too (ambiguous label).
    """
    from xlatent.io.csc.td import read_td

    table = read_td(path)
    if "name" not in table:
        raise InputError(path, "needs columns CSCv2_name and True_Class (or name and source_class)")
    frame = table[["name", "source_class"]]
    frame = frame[(frame["name"] != "") & (frame["source_class"] != "")]
    key = frame["name"].map(normalize_name)
    n_classes = frame.groupby(key)["source_class"].transform("nunique")
    frame = frame[n_classes == 1].drop_duplicates("name").reset_index(drop=True)
    return frame


def join_files(
    spectrum_set: SpectrumSet,
    catalog: str | Path | None = None,
    labels: str | Path | None = None,
) -> SpectrumSet:
    """:func:`join_catalog` from files: a catalogue (FITS/Parquet/CSV) and/or a labels CSV.

    With labels only, spectra are labelled by the ``name`` already in their ``meta``.
    """
    if catalog is None and labels is None:
        return spectrum_set
    table = (
        _catalog_frame(catalog)
        if catalog is not None
        else pd.DataFrame({k: pd.Series(dtype=np.int64) for k in KEY})
    )
    return join_catalog(spectrum_set, table, read_labels(labels) if labels is not None else None)


__all__ = ["SOURCE_CLASSES", "join_catalog", "join_files", "normalize_name", "read_labels"]
