"""The clustering protocol on a labelled catalogue table: the real-sky reference.

No CSC spectra can be fetched offline, but a labelled CSC table (the 2,941 sources of Yang et
al. 2022, ``TD.csv``) carries the human-extracted features of real sources. ``evaluate_table``
runs on them the *same* clustering protocol and supervised probe that
:func:`xlatent.analysis.evaluate` runs on spectra, so the hardness rows of a simulated
evaluation can be set beside the real sky's.

Features: the ``hardness`` set, hardness ratios HM, HS, MS and log10 of the broad-band flux
(like-for-like with ``evaluate``'s ``hardness_flux``, not with its ``hardness``, which takes
log counts), and ``hardness_ratios``, the three ratios alone. A CSC table's ``hard_hm``,
``hard_hs``, ``hard_ms`` are the CSC's own photon-flux ratios and keep those names (with
``flux_aper_b``, as written by ``xlatent csc query``); otherwise ratios are computed from the
band energy fluxes ``Fs``, ``Fm``, ``Fh``, ``Fb`` (TD.csv) as (F_h - F_m) / (F_h + F_m) and so
on, named ``hr_eflux_hm``, ``hr_eflux_hs``, ``hr_eflux_ms``: energy-flux ratios are neither the
CSC's photon-flux ratios nor the count ratios (``hr_counts_*``) of a SpectrumSet, but they
order sources alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.analysis import protocols
from xlatent.analysis._common import REFERENCE, Context, make_split, safe_log10
from xlatent.analysis.features import FeatureSet, standardise
from xlatent.core.bands import CSC_HARDNESS_COLUMNS, hardness_ratio
from xlatent.io.csc.td import BAND_FLUX_COLUMNS, CLASS_COLUMNS, band_fluxes, labelled
from xlatent.io.csc.td import class_column as find_class_column

#: Repeats on a table: fits on ~2,000 rows are cheap, and the rare classes need them.
TABLE_REPEATS = 10


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)


def table_hardness(frame: pd.DataFrame) -> tuple[np.ndarray, list[str], str]:
    """(n, 4) raw hardness features of a table (lower-case columns), names and their origin."""
    if all(c in frame for c in CSC_HARDNESS_COLUMNS):
        flux = _num(frame, "flux_aper_b") if "flux_aper_b" in frame else np.full(len(frame), np.nan)
        cols = [_num(frame, c) for c in CSC_HARDNESS_COLUMNS] + [safe_log10(flux)]
        origin = "CSC catalogue photon-flux hard_hm, hard_hs, hard_ms, log10 flux_aper_b"
        return np.column_stack(cols), [*CSC_HARDNESS_COLUMNS, "log_flux_b"], origin
    if all(c in frame for c in BAND_FLUX_COLUMNS.values()):
        f = band_fluxes(frame)
        ratios = [hardness_ratio(f["h"], f["m"]), hardness_ratio(f["h"], f["s"]),
                  hardness_ratio(f["m"], f["s"])]  # fmt: skip
        raw = np.column_stack([*ratios, safe_log10(f["b"])])
        names = ["hr_eflux_hm", "hr_eflux_hs", "hr_eflux_ms", "log_flux_b"]
        return raw, names, "hardness ratios of band energy fluxes Fs, Fm, Fh (hr_eflux_*); log10 Fb"
    raise ValueError(
        "the table has neither CSC hardness columns (hard_hm, hard_hs, hard_ms) nor band "
        "fluxes (Fs, Fm, Fh, Fb)"
    )


def evaluate_table(
    table: str | Path | pd.DataFrame,
    out_dir: str | Path,
    seed: int = 0,
    class_column: str | None = None,
    max_points: int = 5000,
    n_repeats: int = TABLE_REPEATS,
) -> dict[str, Any]:
    """Cluster and probe the hardness features of a labelled table; write ``metrics.json``.

    ``table``: a path (CSV, TSV, Parquet, FITS, VOTable) or a DataFrame. ``class_column``:
    the label column (default: ``True_Class``, else ``source_class``); classes outside the
    eight are left unlabelled. The split is stratified 70/30 by class (seeded), drawn afresh for
    each of ``n_repeats`` repeats; both clustering protocols (``k8`` like the reference study,
    ``tuned``) and the ``k8_majority`` map are reported with 95% intervals. Returns the metrics
    written to ``out_dir/metrics.json``, in the layout of ``evaluate``'s.
    """
    from xlatent.analysis.evaluation import (
        FORMAT,
        FORMAT_VERSION,
        feature_info,
        headline_rows,
        write_metrics,
    )
    from xlatent.io.csc.query import read_table

    if isinstance(table, pd.DataFrame):
        frame, source = table.rename(columns=lambda c: str(c).lower()), "DataFrame"
    else:
        frame, source = read_table(table), str(table)
    found = find_class_column(frame, class_column)
    if found is None:
        wanted = [class_column.lower()] if class_column else list(CLASS_COLUMNS)
        raise ValueError(f"{source}: no class column ({' or '.join(wanted)})")
    raw, names, origin = table_hardness(frame)
    classes = labelled(frame, found)["source_class"]
    meta = pd.DataFrame({"source_class": classes.to_numpy(dtype=object)})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(meta=meta, is_train=make_split(meta, seed), out_dir=out, seed=seed,
                  max_points=max_points)  # fmt: skip
    x, cols, info = standardise(raw, names)
    sets = {"hardness": FeatureSet("hardness", x, cols, origin, raw.shape[1], info)}
    x, cols, info = standardise(raw[:, :-1], names[:-1])
    sets["hardness_ratios"] = FeatureSet(
        "hardness_ratios", x, cols, f"{', '.join(names[:-1])} alone", raw.shape[1] - 1, info
    )
    labels = ctx.labels()
    per_class = pd.Series(labels[labels != ""]).value_counts()
    metrics: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "data": {
            "source_table": source,
            "n_rows": len(frame),
            "n_labelled": int((labels != "").sum()),
            "classes": {k: int(v) for k, v in per_class.items()},
            "n_train": int(ctx.is_train.sum()),
            "n_test": int((~ctx.is_train).sum()),
            "split_source": "stratified 70/30 (drawn afresh for every repeat)",
            "class_column": found,
        },
        "features": {name: feature_info(fs) for name, fs in sets.items()},
    }
    metrics.update(protocols.run(sets, ctx, n_repeats))
    metrics["headline"] = headline_rows(metrics, list(sets))
    metrics["reference"] = REFERENCE
    metrics["skipped"] = ctx.skipped
    metrics["notes"] = [f"catalogue features only (no spectra): {origin}", *ctx.notes]
    metrics["figures"] = ctx.figures
    return write_metrics(out, metrics)
