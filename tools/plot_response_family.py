"""Figure docs/figures/response_family.png: the ACIS response family against the four real
ARFs in ../shared, and its on-axis area at 0.5, 1 and 2 keV versus date; prints the table of
max |family/real - 1| over 0.5-7 keV used in docs/simulator.md.

    PYTHONPATH=src python tools/plot_response_family.py [--shared ../shared] [--out PNG]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xlatent.instrument import family as F  # noqa: E402
from xlatent.io.ogip_response import read_arf  # noqa: E402
from xlatent.io.response_context import response_context  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = (
    ("308", "acisf00308_000N001_r0044_arf3.fits", "acisf00308_000N001_r0044_pha3.fits"),
    ("1878", "acisf01878_000N001_r0100_arf3.fits", "acisf01878_000N001_r0100_pha3.fits"),
    ("1575", "acisf01575_001N001_r0085_arf3.fits.gz", "acisf01575_001N001_r0085_pha3.fits.gz"),
    ("9774", "9774.arf", "9774.pi"),
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures/response_family.png")
    args = ap.parse_args()
    spectra = args.shared / "data/real_spectra"
    centres = F._centres()

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    rows = []
    for ax, (obsid, arf_name, pha_name) in zip(axes.flat[:4], REAL, strict=True):
        ctx = response_context(spectra / arf_name, spectra / pha_name)
        arf = read_arf(spectra / arf_name)
        e = 0.5 * (arf.energ_lo + arf.energ_hi)
        fam = F.effective_area_cm2(ctx["chip_type"], ctx["epoch_year"], ctx["theta_arcmin"])[0]
        fam_on_arf = np.interp(e, centres, fam)
        sel = (e >= 0.5) & (e <= 7.0)
        dev = fam_on_arf[sel] / arf.specresp[sel] - 1.0
        worst = int(np.argmax(np.abs(dev)))
        rows.append((obsid, ctx, dev[worst], e[sel][worst]))
        label = (f"ObsID {obsid}: {ctx['chip_type']} CCD {ctx['ccd_id']}, "
                 f"{ctx['epoch_year']:.2f}, {ctx['theta_arcmin']:.1f}'")  # fmt: skip
        ax.plot(e, arf.specresp, "k-", lw=1.2, label="real ARF")
        ax.plot(centres, fam, "r--", lw=1.2, label="family")
        ax.set(xscale="log", xlim=(0.3, 10), ylim=(0, 800), xlabel="energy (keV)",
               ylabel="effective area (cm$^2$)", title=label)  # fmt: skip
        ax.legend(loc="upper right", fontsize=8)
        axes[1, 1].plot(e[sel], dev, lw=1, label=f"{obsid} (max {abs(dev[worst]):.3f})")
    ax = axes[1, 1]
    ax.axhspan(-0.1, 0.1, color="0.9")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xscale="log", xlabel="energy (keV)", ylabel="family / real - 1", ylim=(-0.25, 0.25),
           title="ratio over 0.5-7 keV (1575 calibrates the mirror)")  # fmt: skip
    ax.set_xticks([0.5, 1, 2, 5, 7], ["0.5", "1", "2", "5", "7"], minor=False)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    years = np.linspace(*F.EPOCH_RANGE_YEAR, 200)
    idx = [int(np.argmin(np.abs(centres - x))) for x in (0.5, 1.0, 2.0)]
    for chip, style in (("BI", "-"), ("FI", "--")):
        area = F.effective_area_cm2(chip, years, 0.0)
        for i, (k, colour) in enumerate(zip(idx, ("C0", "C1", "C2"), strict=True)):
            ax.plot(years, area[:, k], style, color=colour,
                    label=f"{chip} {(0.5, 1.0, 2.0)[i]} keV")  # fmt: skip
    ax.set(xlabel="observation date (year)", ylabel="on-axis area (cm$^2$)", yscale="log",
           title="family on-axis area vs date (contaminant)")  # fmt: skip
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    print(
        "| ObsID | chip | CCD | date | theta (') | max abs(family/real - 1), 0.5-7 keV | at (keV) |"
    )
    print("|---|---|---:|---|---:|---:|---:|")
    for obsid, ctx, dev, e_worst in rows:
        print(f"| {obsid} | {ctx['chip_type']} | {ctx['ccd_id']} | {ctx['date_obs'][:10]} "
              f"({ctx['epoch_year']:.2f}) | {ctx['theta_arcmin']:.2f} | {abs(dev):.3f} "
              f"({dev:+.3f}) | {e_worst:.2f} |")  # fmt: skip
    on = F.effective_area_cm2(["BI", "FI"], 2025.0, 0.0)[:, idx]
    print(f"2025.0 on-axis area at 0.5/1/2 keV: BI {on[0].round(1)}, FI {on[1].round(1)} cm^2")


if __name__ == "__main__":
    main()
