"""Compact band-flux expressions that track each latent dimension (a small symbolic search).

Candidates, built from the soft/medium/hard/broad band values of each available source
(observed net counts; true absorbed fluxes when the simulator's ``truth_flux_*`` exist):

- products of powers ``log(S^a M^b H^c B^d)`` with small integer exponents (|a..d| <= 2),
  which include single bands, colours ``log(H/S)`` and curvature-like ``log(S H / M^2)``;
- normalised differences ``(X - Y)/(X + Y)`` (CSC-style hardness ratios);
- band fractions ``X / B``.

Each candidate is ranked by |Spearman rho| with the latent, with a small penalty per unit of
complexity (sum of |exponents|; 3 for a normalised difference, 2 for a fraction), so a simpler
expression wins unless a complex one is clearly better. PySR is used for nothing here (not a
dependency); the enumeration is exhaustive over this grammar and takes well under a second.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from xlatent.analysis._common import Context, save_figure, subsample

BANDS = ("s", "m", "h", "b")
MAX_POWER = 2
#: |rho| given up per unit of complexity when ranking expressions.
PARSIMONY = 0.01
TOP = 5


def band_sources(meta: pd.DataFrame, hardness: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Positive band values per source: ``counts`` (net counts, floored at 1), ``flux``."""
    out = {}
    if all(f"net_counts_{b}" in hardness for b in BANDS):
        c = hardness[[f"net_counts_{b}" for b in BANDS]].to_numpy(dtype=np.float64)
        out["counts"] = pd.DataFrame(np.maximum(np.nan_to_num(c, nan=0.0), 1.0), columns=BANDS)
    if all(f"truth_flux_{b}" in meta for b in BANDS):
        f = meta[[f"truth_flux_{b}" for b in BANDS]].to_numpy(dtype=np.float64)
        pos = f[np.isfinite(f) & (f > 0)]
        if pos.size:
            # Zero flux (fully absorbed soft band) -> a floor a decade below the smallest one.
            f = np.where(np.isfinite(f) & (f > 0), f, 0.1 * pos.min())
            out["flux"] = pd.DataFrame(f, columns=BANDS)
    return out


def _power_name(exps: tuple[int, ...], sym: str) -> str:
    num, den = [], []
    for b, e in zip(BANDS, exps, strict=True):
        term = f"{sym}{b.upper()}" + (f"^{abs(e)}" if abs(e) > 1 else "")
        if e > 0:
            num.append(term)
        elif e < 0:
            den.append(term)
    top = "·".join(num) if num else "1"
    if not den:
        return f"log({top})"
    bottom = den[0] if len(den) == 1 else "(" + "·".join(den) + ")"
    return f"log({top}/{bottom})"


def candidates(src: pd.DataFrame, sym: str) -> tuple[np.ndarray, list[str], list[int]]:
    """Candidate expression values (n, k), their names and complexities."""
    logs = np.log10(src[list(BANDS)].to_numpy(dtype=np.float64))
    cols, names, cx = [], [], []
    rng = range(-MAX_POWER, MAX_POWER + 1)
    for exps in itertools.product(rng, repeat=len(BANDS)):
        nz = [e for e in exps if e]
        # One representative per direction: first exponent positive, no common factor.
        if not nz or nz[0] < 0 or math.gcd(*[abs(e) for e in nz]) != 1:
            continue
        cols.append(logs @ np.asarray(exps, dtype=np.float64))
        names.append(_power_name(exps, sym))
        cx.append(sum(abs(e) for e in exps))
    v = src[list(BANDS)].to_numpy(dtype=np.float64)
    for i, j in itertools.combinations(range(len(BANDS)), 2):
        x, y = v[:, j], v[:, i]  # "harder minus softer" with bands ordered s, m, h, b
        cols.append((x - y) / (x + y))
        names.append(f"({sym}{BANDS[j].upper()}-{sym}{BANDS[i].upper()})/"
                     f"({sym}{BANDS[j].upper()}+{sym}{BANDS[i].upper()})")  # fmt: skip
        cx.append(3)
    for i in range(3):
        cols.append(v[:, i] / v[:, 3])
        names.append(f"{sym}{BANDS[i].upper()}/{sym}B")
        cx.append(2)
    return np.column_stack(cols), names, cx


def _spearman_all(z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Spearman rho of every z column with every x column, (dz, dx)."""
    rz = rankdata(z, axis=0)
    rx = rankdata(x, axis=0)
    rz = (rz - rz.mean(0)) / np.maximum(rz.std(0), 1e-12)
    rx = (rx - rx.mean(0)) / np.maximum(rx.std(0), 1e-12)
    return rz.T @ rx / len(z)


def search(z: np.ndarray, sources: dict[str, pd.DataFrame]) -> dict[str, list[dict[str, Any]]]:
    """Top expressions per latent dimension: ``{latent_i: [{expression, rho, ...}, ...]}``."""
    xs, names, cxs, srcs = [], [], [], []
    symbols = {"counts": "C", "flux": "F"}
    for key, src in sources.items():
        x, n, c = candidates(src, symbols.get(key, key[0].upper()))
        xs.append(x)
        names += n
        cxs += c
        srcs += [key] * len(n)
    x = np.column_stack(xs)
    finite = np.isfinite(x).all(axis=0)
    x, names = x[:, finite], [n for n, f in zip(names, finite, strict=True) if f]
    cxs = [c for c, f in zip(cxs, finite, strict=True) if f]
    srcs = [s for s, f in zip(srcs, finite, strict=True) if f]
    rho = _spearman_all(z, x)
    out = {}
    for i in range(z.shape[1]):
        score = np.abs(rho[i]) - PARSIMONY * np.asarray(cxs)
        order = np.argsort(-score)
        top, seen = [], []
        for k in order:
            # Expressions that are monotone transforms of each other (X/B vs log X/B) tie
            # exactly; keep one of each.
            r = round(abs(float(rho[i, k])), 6)
            if r in seen:
                continue
            seen.append(r)
            top.append({"expression": names[k], "rho": float(rho[i, k]),
                        "complexity": int(cxs[k]), "source": srcs[k]})  # fmt: skip
            if len(top) == TOP:
                break
        out[f"latent_{i}"] = top
    return out


def _figure(z: np.ndarray, top: dict[str, list[dict[str, Any]]],
            sources: dict[str, pd.DataFrame], ctx: Context) -> None:  # fmt: skip
    import matplotlib.pyplot as plt

    d = z.shape[1]
    ncol = min(4, d)
    nrow = int(np.ceil(d / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.9 * nrow), squeeze=False)
    symbols = {"counts": "C", "flux": "F"}
    for i, ax in enumerate(axes.ravel()):
        if i >= d or not top.get(f"latent_{i}"):
            ax.axis("off")
            continue
        best = top[f"latent_{i}"][0]
        src = sources[best["source"]]
        x, names, _ = candidates(src, symbols.get(best["source"], "X"))
        xv = x[:, names.index(best["expression"])]
        ax.scatter(xv, z[:, i], s=2, alpha=0.3, rasterized=True)
        ax.set_xlabel(best["expression"], fontsize=7)
        ax.set_ylabel(f"latent_{i}", fontsize=8)
        ax.set_title(f"rho = {best['rho']:+.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_figure(
        ctx, fig, "interpretation_best_expressions.png",
        "Each latent dimension against the band expression that tracks it best (C: net "
        "counts, F: true absorbed flux; S/M/H/B = 0.5-1.2, 1.2-2, 2-7, 0.5-7 keV).",
        "interpretation",
    )  # fmt: skip


def run(z: np.ndarray, ctx: Context, hardness: pd.DataFrame) -> dict[str, Any]:
    """``interpretation``: top expressions per latent dimension, with Spearman rho."""
    sources = band_sources(ctx.meta.reset_index(drop=True), hardness.reset_index(drop=True))
    if not sources:
        ctx.skip("interpretation", "no band net counts or band fluxes")
        return {}
    rows = subsample(np.arange(len(z)), ctx.max_points, ctx.rng(31))
    sub = {k: v.iloc[rows].reset_index(drop=True) for k, v in sources.items()}
    top = search(z[rows], sub)
    _figure(z[rows], top, sub, ctx)
    return {
        "top_expressions": top,
        "grammar": "log(S^a M^b H^c B^d), |a..d| <= 2; (X-Y)/(X+Y); X/B",
        "sources": list(sources),
        "n_rows": int(rows.size),
        "parsimony_per_complexity": PARSIMONY,
    }
