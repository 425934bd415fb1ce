"""Where a model's excess deviance sits in the brightest count decile of a simulated set.

    PYTHONPATH=src python benchmarks/deviance_breakdown.py --set sim.h5 [--model DIR]

On the set's 'test' rows (the demo's held-out split): the deviance ratio to the noiseless truth
(a ratio of means, as ``evaluate``'s ``per_counts_decile``) of the brightest decile, split by
count range, by class and by simulated pile-up fraction (< or >= ``--pileup``), each part's
share of the decile's excess deviance (model minus truth), and the energy bins that carry most
of it. ``--model``: a model directory (default: the pretrained model). Figures are printed.
"""

from __future__ import annotations

import argparse

import numpy as np


def bin_deviance(counts: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Poisson deviance per bin: :func:`xlatent.model.poisson_deviance` over a last axis of one."""
    from xlatent.model import poisson_deviance

    return poisson_deviance(counts[..., None], mu[..., None])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", required=True, help="a simulated SpectrumSet (.h5, 'split')")
    ap.add_argument("--model", default=None, help="model directory (default: pretrained)")
    ap.add_argument("--pileup", type=float, default=0.05, help="pile-up fraction split")
    args = ap.parse_args()

    from xlatent.core import SpectrumSet
    from xlatent.model import load_model

    s = SpectrumSet.read(args.set)
    sub = s[np.flatnonzero(s.meta["split"].to_numpy() == "test")]
    rec = np.asarray(load_model(args.model).reconstruct(sub), dtype=np.float64)
    dev = bin_deviance(sub.counts, rec + sub.background)
    true = bin_deviance(sub.counts, sub.expected_counts + sub.background)
    n = sub.counts.sum(axis=1)
    top = np.argsort(n)[-(n.size // 10) :]
    excess = (dev - true)[top].sum()

    def part(label: str, rows: np.ndarray) -> None:
        if rows.size:
            r = dev[rows].sum() / true[rows].sum()
            share = (dev[rows] - true[rows]).sum() / excess
            print(f"  {label:<22} n {rows.size:4d}  ratio {r:.3f}  share of excess {share:+.2f}")

    print(f"brightest decile of {len(sub)} test spectra: {top.size} with "
          f"{n[top].min():.0f}-{n[top].max():.0f} counts, ratio "
          f"{dev[top].sum() / true[top].sum():.3f}")  # fmt: skip
    for lo, hi in ((0, 3e3), (3e3, 1e4), (1e4, 3e4), (3e4, np.inf)):
        part(f"counts {lo:.0f}-{hi:.0f}", top[(n[top] >= lo) & (n[top] < hi)])
    cls = sub.meta["source_class"].to_numpy()[top]
    for c in np.unique(cls):
        part(str(c), top[cls == c])
    if "pileup_fraction" in sub.meta:
        pu = sub.meta["pileup_fraction"].to_numpy()
        part(f"pile-up < {args.pileup:g}", top[pu[top] < args.pileup])
        part(f"pile-up >= {args.pileup:g}", top[pu[top] >= args.pileup])
        frac = np.mean(pu >= args.pileup)
        print(f"  (all test spectra with pile-up >= {args.pileup:g}: {frac:.1%})")
    per_bin = (dev - true)[top].sum(axis=0)
    e = sub.grid.centers_kev
    worst = np.argsort(per_bin)[::-1][:8]
    print("bins with most of the excess: "
          + ", ".join(f"{e[i]:.2f} keV {per_bin[i] / excess:.1%}" for i in worst))  # fmt: skip


if __name__ == "__main__":
    main()
