"""Realism check: simulated versus real CSC colours per class (Yang et al. 2022 TD table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlatent.core.errors import InputError
from xlatent.core.spectrumset import SpectrumSet
from xlatent.core.vocabulary import CLASSES_BY_TD_SIZE
from xlatent.io.csc.td import BAND_FLUX_COLUMNS, read_td

#: Bounds for classes with at least ``MIN_REAL`` labelled members.
MEDIAN_TOL_DEX = 0.25
IQR_FACTOR = 2.0
MIN_REAL = 40

COLOURS = {"ms": ("m", "s"), "hs": ("h", "s")}


def _colours(fs: np.ndarray, fm: np.ndarray, fh: np.ndarray) -> dict[str, np.ndarray]:
    bands = {"s": fs, "m": fm, "h": fh}
    out = {}
    for name, (num, den) in COLOURS.items():
        a, b = bands[num], bands[den]
        ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
        out[name] = np.log10(a[ok] / b[ok])
    return out


def _stats(x: np.ndarray) -> tuple[float, float]:
    if x.size == 0:
        return float("nan"), float("nan")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(q50), float(q75 - q25)


def compare_to_td(sim_set: SpectrumSet, td_path: str | Path) -> pd.DataFrame:
    """Per class, median and IQR of log10(Fm/Fs) and log10(Fh/Fs): simulated vs real.

    Simulated colours come from the absorbed band energy fluxes ``truth_flux_{s,m,h}``, real
    ones from the TD columns Fs, Fm, Fh (read by :func:`xlatent.io.csc.td.read_td`);
    non-positive fluxes are dropped. ``pass`` is True
    when both medians agree within 0.25 dex and both IQRs within a factor 2; it is checked
    only for classes with at least 40 real members (``checked``).
    """
    td = read_td(td_path)
    flux_cols = [BAND_FLUX_COLUMNS[b] for b in "smh"]
    if missing := [c for c in flux_cols if c not in td]:
        raise InputError(td_path, f"needs band flux column(s) {', '.join(missing)} (TD.csv)")
    meta = sim_set.meta
    rows = []
    for cls in CLASSES_BY_TD_SIZE:
        real = td[td["source_class"] == cls]
        sim = meta[meta["source_class"] == cls]
        rc = _colours(*(real[c].to_numpy(float) for c in flux_cols))
        sc = _colours(*(sim[f"truth_flux_{b}"].to_numpy(float) for b in "smh"))
        row: dict[str, object] = {"class": cls, "n_real": len(real), "n_sim": len(sim)}
        ok = True
        for name in COLOURS:
            rmed, riqr = _stats(rc[name])
            smed, siqr = _stats(sc[name])
            row.update(
                {
                    f"{name}_med_real": rmed,
                    f"{name}_med_sim": smed,
                    f"{name}_iqr_real": riqr,
                    f"{name}_iqr_sim": siqr,
                }
            )
            ok &= bool(abs(smed - rmed) <= MEDIAN_TOL_DEX)
            ratio = siqr / riqr if riqr > 0 else np.nan
            ok &= bool(np.isfinite(ratio) and 1 / IQR_FACTOR <= ratio <= IQR_FACTOR)
        row["checked"] = len(real) >= MIN_REAL
        row["pass"] = ok
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(row: pd.Series) -> str:
    """PASS / fail for a checked class; the would-be verdict in brackets for an unchecked one."""
    word = "PASS" if row["pass"] else "fail"
    return word if row["checked"] else f"({word.lower()})"


def format_table(df: pd.DataFrame) -> str:
    """A Markdown table of :func:`compare_to_td` output."""
    head = (
        "| class | n real | n sim | log Fm/Fs median real / sim | IQR real / sim "
        "| log Fh/Fs median real / sim | IQR real / sim | checked | pass |\n"
        "|---|---:|---:|---:|---:|---:|---:|:-:|:-:|\n"
    )
    lines = []
    for _, r in df.iterrows():
        lines.append(
            f"| {r['class']} | {r['n_real']} | {r['n_sim']} "
            f"| {r['ms_med_real']:.2f} / {r['ms_med_sim']:.2f} "
            f"| {r['ms_iqr_real']:.2f} / {r['ms_iqr_sim']:.2f} "
            f"| {r['hs_med_real']:.2f} / {r['hs_med_sim']:.2f} "
            f"| {r['hs_iqr_real']:.2f} / {r['hs_iqr_sim']:.2f} "
            f"| {'yes' if r['checked'] else f'no (< {MIN_REAL} real)'} | {verdict(r)} |"
        )
    return head + "\n".join(lines) + "\n"
