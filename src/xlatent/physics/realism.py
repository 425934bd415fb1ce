"""Realism check: simulated versus real CSC sources per class (Yang et al. 2022 TD table).

Per class, real (TD.csv) against simulated: median and IQR of log10(Fm/Fs) and log10(Fh/Fs)
(TD ``Fs/Fm/Fh`` vs ``truth_flux_*``), of log10 Fb (TD ``Fb`` vs ``truth_flux_b``) and of
log10 S/N (TD ``CSCv2_S/N`` vs ``snr_b``), and the fraction of variable sources (TD
``P_intra`` > 0.9 vs ``var_prob_b`` > 0.9). A class passes when every check it has data for
passes: colour medians within ``MEDIAN_TOL_DEX`` and IQRs within a factor ``IQR_FACTOR``;
log-flux and log-S/N medians within ``LEVEL_TOL_DEX``; variable fractions within
``VAR_FRACTION_TOL``. Classes with fewer than ``MIN_REAL`` real members are not checked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xlatent.core.atomic import atomic_write_text
from xlatent.core.errors import InputError
from xlatent.core.spectrumset import SpectrumSet
from xlatent.core.vocabulary import CLASSES_BY_TD_SIZE
from xlatent.io.csc.td import BAND_FLUX_COLUMNS, read_td

MEDIAN_TOL_DEX = 0.25
IQR_FACTOR = 2.0
LEVEL_TOL_DEX = 0.3
VAR_FRACTION_TOL = 0.15
VAR_PROB = 0.9
MIN_REAL = 20

COLOURS = {"ms": ("m", "s"), "hs": ("h", "s")}
#: Log quantities compared by median only: name -> (TD column, simulated column).
LEVELS = {"fb": ("fb", "truth_flux_b"), "snr": ("cscv2_s/n", "snr_b")}


def _colours(fs: np.ndarray, fm: np.ndarray, fh: np.ndarray) -> dict[str, np.ndarray]:
    bands = {"s": fs, "m": fm, "h": fh}
    out = {}
    for name, (num, den) in COLOURS.items():
        a, b = bands[num], bands[den]
        ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
        out[name] = np.log10(a[ok] / b[ok])
    return out


def _log(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.log10(x[np.isfinite(x) & (x > 0)])


def _stats(x: np.ndarray) -> tuple[float, float]:
    if x.size == 0:
        return float("nan"), float("nan")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(q50), float(q75 - q25)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    if name not in frame:
        return None
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)


def _var_fraction(p: np.ndarray | None) -> float:
    if p is None:
        return float("nan")
    p = p[np.isfinite(p)]
    return float(np.mean(p > VAR_PROB)) if p.size else float("nan")


def compare_to_td(sim_set: SpectrumSet, td_path: str | Path) -> pd.DataFrame:
    """Per class, real vs simulated colours, log flux, log S/N and variable fraction.

    Columns ``<q>_med_real``, ``<q>_med_sim`` (and ``<q>_iqr_*`` for q in ms, hs, fb, snr),
    ``var_frac_real``/``var_frac_sim``, ``pass_<check>`` per check (None where the real or
    simulated side lacks the data), ``checked`` (at least ``MIN_REAL`` real members) and
    ``pass``. TD needs ``Fs``, ``Fm``, ``Fh``; ``Fb``, ``CSCv2_S/N`` and ``P_intra`` are
    compared where present (read by :func:`xlatent.io.csc.td.read_td`).
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
        rc = _colours(*(_column(real, c) for c in flux_cols))
        sc = _colours(*(sim[f"truth_flux_{b}"].to_numpy(float) for b in "smh"))
        row: dict[str, Any] = {"class": cls, "n_real": len(real), "n_sim": len(sim)}
        checks: dict[str, bool | None] = {}
        for name in COLOURS:
            rmed, riqr = _stats(rc[name])
            smed, siqr = _stats(sc[name])
            row.update({f"{name}_med_real": rmed, f"{name}_med_sim": smed,
                        f"{name}_iqr_real": riqr, f"{name}_iqr_sim": siqr})  # fmt: skip
            ratio = siqr / riqr if riqr > 0 else np.nan
            checks[f"pass_{name}"] = bool(
                abs(smed - rmed) <= MEDIAN_TOL_DEX
                and np.isfinite(ratio)
                and 1 / IQR_FACTOR <= ratio <= IQR_FACTOR
            )
        for name, (td_col, sim_col) in LEVELS.items():
            r, s = _column(real, td_col), _column(sim, sim_col)
            rmed, riqr = _stats(_log(r)) if r is not None else (np.nan, np.nan)
            smed, siqr = _stats(_log(s)) if s is not None else (np.nan, np.nan)
            row.update({f"{name}_med_real": rmed, f"{name}_med_sim": smed,
                        f"{name}_iqr_real": riqr, f"{name}_iqr_sim": siqr})  # fmt: skip
            known = np.isfinite(rmed) and np.isfinite(smed)
            checks[f"pass_{name}"] = bool(abs(smed - rmed) <= LEVEL_TOL_DEX) if known else None
        fr = _var_fraction(_column(real, "p_intra"))
        fs = _var_fraction(_column(sim, "var_prob_b"))
        row.update({"var_frac_real": fr, "var_frac_sim": fs})
        known = np.isfinite(fr) and np.isfinite(fs)
        checks["pass_var"] = bool(abs(fs - fr) <= VAR_FRACTION_TOL) if known else None
        row.update(checks)
        row["checked"] = len(real) >= MIN_REAL
        row["pass"] = all(v for v in checks.values() if v is not None)
        rows.append(row)
    return pd.DataFrame(rows)


def realism_record(table: pd.DataFrame, td_path: str | Path | None = None) -> dict[str, Any]:
    """The JSON document of a :func:`compare_to_td` table: ``all_pass`` (every checked
    class passes), ``bounds`` and ``classes`` (one row per class with ``class`` and ``pass``)."""

    def clean(v: Any) -> Any:
        if isinstance(v, (np.bool_, bool)):
            return bool(v)
        if isinstance(v, (np.integer, int)):
            return int(v)
        if isinstance(v, (np.floating, float)):
            return round(float(v), 4) if np.isfinite(v) else None
        return v

    classes = [{k: clean(v) for k, v in r.items()} for r in table.to_dict("records")]
    checked = [r for r in classes if r["checked"]]
    return {
        "all_pass": bool(checked) and all(r["pass"] for r in checked),
        "td_path": None if td_path is None else str(td_path),
        "bounds": {
            "colour_median_dex": MEDIAN_TOL_DEX,
            "colour_iqr_factor": IQR_FACTOR,
            "flux_snr_median_dex": LEVEL_TOL_DEX,
            "var_fraction": VAR_FRACTION_TOL,
            "var_prob": VAR_PROB,
            "min_real": MIN_REAL,
        },  # fmt: skip
        "classes": classes,
    }


def write_realism(path: str | Path, table: pd.DataFrame, td_path: str | Path | None = None) -> None:
    """Write :func:`realism_record` as JSON, atomically."""
    atomic_write_text(path, json.dumps(realism_record(table, td_path), indent=2) + "\n")


def verdict(row: pd.Series) -> str:
    """PASS / fail for a checked class; the would-be verdict in brackets for an unchecked one."""
    word = "PASS" if row["pass"] else "fail"
    return word if row["checked"] else f"({word.lower()})"


def _failed(row: pd.Series) -> str:
    names = [
        k[5:]
        for k in row.index
        if k.startswith("pass_") and isinstance(row[k], (bool, np.bool_)) and not row[k]
    ]
    return ", ".join(names)


def format_table(df: pd.DataFrame) -> str:
    """A Markdown table of :func:`compare_to_td` output: medians real / sim (IQRs for the
    colours), the variable fraction, and the verdict with the failed checks."""
    head = (
        "| class | n real | n sim | log Fm/Fs med (IQR) real / sim | log Fh/Fs med (IQR) "
        "real / sim | log Fb real / sim | log S/N real / sim | var. frac real / sim | pass |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|\n"
    )
    lines = []
    for _, r in df.iterrows():
        failed = _failed(r)
        lines.append(
            f"| {r['class']} | {r['n_real']} | {r['n_sim']} "
            f"| {r['ms_med_real']:.2f} ({r['ms_iqr_real']:.2f}) / {r['ms_med_sim']:.2f} "
            f"({r['ms_iqr_sim']:.2f}) "
            f"| {r['hs_med_real']:.2f} ({r['hs_iqr_real']:.2f}) / {r['hs_med_sim']:.2f} "
            f"({r['hs_iqr_sim']:.2f}) "
            f"| {r['fb_med_real']:.2f} / {r['fb_med_sim']:.2f} "
            f"| {r['snr_med_real']:.2f} / {r['snr_med_sim']:.2f} "
            f"| {r['var_frac_real']:.2f} / {r['var_frac_sim']:.2f} "
            f"| {verdict(r)}{f' ({failed})' if failed else ''} |"
        )
    return head + "\n".join(lines) + "\n"


def summary_line(df: pd.DataFrame) -> str:
    """One line: how many checked classes pass, and the bounds."""
    checked = df[df["checked"]]
    return (
        f"realism: {int(checked['pass'].sum())}/{len(checked)} checked classes pass (colour "
        f"medians within {MEDIAN_TOL_DEX} dex and IQRs x{IQR_FACTOR:g}; log Fb and log S/N "
        f"medians within {LEVEL_TOL_DEX} dex; variable fraction within {VAR_FRACTION_TOL})"
    )
