"""Combine the per-observation spectra of one source into one spectrum (``combine_by``).

A CSC source observed N times has N per-observation spectra (one per ``obsid, obi,
region_id``); ``combine_by(set, "name")`` sums them into one spectrum per source, as one
would stack spectra for a fit (CIAO's ``combine_spectra`` without the response merging: the
grid is common, so no RMF is needed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from xlatent.core import SpectrumSet

#: Identifier columns whose "unknown" value is -1 (the others: NaN for numbers, "" for text).
_INT_IDS = ("obsid", "obi", "region_id")
#: Flags combined by "all rows" (a quantity is known only if known for every part) ...
_ALL_FLAGS = ("effective_area_known", "background_known")
#: ... and by "any row" (estimated if any part was estimated).
_ANY_FLAGS = ("exposure_estimated",)


def combine_by(spectrum_set: SpectrumSet, column: str = "name") -> SpectrumSet:
    """One spectrum per value of ``meta[column]`` (e.g. per CSC source ``name``).

    For the spectra ``k`` of one group:

    * ``counts``, ``background`` (each already scaled to its own source region) and, when
      present, ``expected_counts`` add bin by bin;
    * ``exposure_s`` adds (T = sum t_k);
    * the effective area becomes the exposure-weighted mean area, A = sum t_k A_k / T, so that
      exposure x area (the expected counts per unit photon flux) adds like the counts do;
    * ``meta``: ``spec_id`` is the group's value (made unique with ``_1``, ``_2`` ... if it
      collides), ``combined_spec_ids`` lists the ids combined (``;``-separated, in set
      order), ``n_combined`` counts them; every other column is kept where all the combined
      rows agree and set to "unknown" where they differ (NaN; "" for text; -1 for ``obsid``,
      ``obi``, ``region_id``); ``effective_area_known`` and ``background_known`` hold only if
      they hold for every part, ``exposure_estimated`` if it held for any; band columns
      (``net_counts_*``, ``hr_counts_*``) are recomputed from the summed spectra.

    Rows whose ``column`` is empty or missing are left as they are (``n_combined`` 1).
    Groups come out in order of their first spectrum. Raises ``ValueError`` when ``meta``
    has no such column.
    """
    s = spectrum_set
    if column not in s.meta:
        raise ValueError(f"cannot combine by {column!r}: the set has no such meta column")
    meta = s.meta.reset_index(drop=True)
    raw = meta[column]
    values = raw.astype(str).str.strip().to_numpy(dtype=object)
    empty = raw.isna().to_numpy() | np.isin(values, ["", "nan", "None"])
    keys = np.where(empty, np.char.add("\0row", np.arange(len(meta)).astype(str)), values)
    first, inverse = np.unique(keys.astype(str), return_index=True, return_inverse=True)[1:]
    order = np.argsort(first, kind="stable")
    groups = [np.flatnonzero(inverse.reshape(-1) == g) for g in order]

    t = s.exposure_s
    counts = np.stack([s.counts[g].sum(axis=0) for g in groups]) if groups else s.counts[:0]
    background = np.stack([s.background[g].sum(axis=0) for g in groups]) if groups else counts
    exposure = np.array([t[g].sum() for g in groups], dtype=np.float64)
    area = (
        np.stack([(t[g, None] * s.effective_area_cm2[g]).sum(axis=0) / t[g].sum() for g in groups])
        if groups
        else s.effective_area_cm2[:0]
    )
    expected = None
    if s.expected_counts is not None:
        expected = np.stack([s.expected_counts[g].sum(axis=0) for g in groups])
    rows = [_combined_row(meta, g, column, bool(empty[g[0]])) for g in groups]
    out_meta = pd.DataFrame(rows, columns=[*meta.columns, "combined_spec_ids", "n_combined"])
    out_meta["spec_id"] = _unique(out_meta["spec_id"].astype(str).tolist())
    out = SpectrumSet(
        grid=s.grid, counts=counts, background=background, exposure_s=exposure,
        effective_area_cm2=area, meta=out_meta, expected_counts=expected,
        provenance=list(s.provenance),
    )  # fmt: skip
    out.update_band_columns()
    out.add_provenance("combine_by", column=column, n_in=len(s), n_out=len(out),
                       n_multi=int(sum(len(g) > 1 for g in groups)))  # fmt: skip
    return out


def _combined_row(meta: pd.DataFrame, idx: np.ndarray, column: str, unnamed: bool) -> dict:
    part = meta.iloc[idx]
    row: dict[str, Any] = {}
    for col in meta.columns:
        vals = part[col]
        if col in _ALL_FLAGS:  # a missing flag counts as known
            row[col] = bool(vals.map(lambda v: _flag(v, True)).all())
        elif col in _ANY_FLAGS:  # a missing flag counts as not estimated
            row[col] = bool(vals.map(lambda v: _flag(v, False)).any())
        elif _all_equal(vals):
            row[col] = vals.iloc[0]
        elif col in _INT_IDS:
            row[col] = -1
        elif pd.api.types.is_numeric_dtype(vals) or pd.api.types.is_bool_dtype(vals):
            row[col] = np.nan
        else:
            row[col] = ""
    ids = part["spec_id"].astype(str).tolist()
    row["spec_id"] = ids[0] if unnamed else str(part[column].iloc[0]).strip()
    row["combined_spec_ids"] = ";".join(ids)
    row["n_combined"] = len(ids)
    return row


def _flag(v: Any, missing: bool) -> bool:
    return missing if v is None or v != v else bool(v)


def _all_equal(vals: pd.Series) -> bool:
    if len(vals) == 1:
        return True
    first = vals.iloc[0]
    if vals.isna().all():
        return True
    try:
        return bool((vals == first).all())
    except (TypeError, ValueError):
        return False


def _unique(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        n = seen.get(i, 0)
        seen[i] = n + 1
        out.append(i if n == 0 else f"{i}_{n}")
    return out


__all__ = ["combine_by"]
