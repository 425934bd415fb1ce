"""Build ``src/xlatent/instrument/data/acis_family.npz``, the calibration table of the ACIS
response family (docs/simulator.md, "Response family"), from public calibration files.

    PYTHONPATH=src python tools/build_acis_family.py \\
        --qe /tmp/marxdata/qeN0006.fits --contam /tmp/marxdata/contamN0007.fits \\
        --mirror-arf ../shared/data/real_spectra/acisf01575_001N001_r0085_arf3.fits.gz \\
        --mirror-pha ../shared/data/real_spectra/acisf01575_001N001_r0085_pha3.fits.gz \\
        --rmf-fi ../shared/data/real_spectra/acisf00308_000N001_r0044_rmf3.fits \\
        --rmf-fi ../shared/data/real_spectra/acisf01878_000N001_r0100_rmf3.fits \\
        --rmf-bi ../shared/data/real_spectra/acisf01575_001N001_r0085_rmf3.fits.gz \\
        --rmf-bi ../shared/data/real_spectra/9774.rmf

Inputs: the CALDB ACIS QE file acisD1997-04-17qeN0006 (AXAF_QE extensions 1..10 = CCD 0..9,
optical blocking filter included) and the contamination model acisD1999-08-13contamN0007 in
MARX layout (both in the MARX repository, marx/data/caldb), one on-axis ARF that calibrates the
mirror (ObsID 1575, ACIS-S3, 2001-10-05), and real RMFs whose line cores give FWHM(E).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from astropy.io import fits

from xlatent.instrument.acis_calib import tau067, vignetting_factor
from xlatent.instrument.family import energy_bins, fwhm_law
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.io.response_context import response_context

OUT = Path(__file__).resolve().parents[1] / "src/xlatent/instrument/data/acis_family.npz"
FI_CCDS, BI_CCDS = (0, 1, 2, 3), (7,)  # ACIS-I0..I3 (mean) and ACIS-S3
SECONDS_PER_YEAR = 365.25 * 86400.0
ARCMIN_PER_PIXEL = 0.492 / 60.0
#: ACIS-I: fxy is radial about the array centre, the corner (x0, y0) of each I chip (MARX
#: aciscontam.c). ACIS-S3: the aimpoint in chip pixels (approximate, POG ch. 6 figure 6.1).
I_ARRAY_CENTRE = {0: (1024.5, 1024.5), 1: (0.5, 1024.5), 2: (0.5, 1024.5), 3: (1024.5, 1024.5)}
S3_AIMPOINT = (224.0, 532.0)
THETA_GRID = np.arange(0.0, 15.01, 0.25)
#: Contaminant growth after the N0007 model ends (2014.5): (start year, relative rate).
#: N0011/N0012 describe accumulation levelling off in 2016-2017; N0013/N0014 found that the
#: fast pre-2016 rate resumed (CIAO "why" pages acisqecontamN0011..N0014).
GROWTH_PHASES = ((2014.5, 1.0), (2016.0, 0.5), (2017.5, 1.0))
END_YEAR = 2026.0
#: Today's on-axis ACIS-S3 ARFs have 10-20 cm^2 at 0.5 keV (issue 12): the growth rate after
#: 2014.5 is scaled so that the family gives the middle of that range in 2025.0.
BI_AREA_05KEV_2025_CM2 = 15.0


def read_qe(path: Path, centres: np.ndarray) -> dict[int, np.ndarray]:
    """QE of CCD 0..9 on ``centres`` (keV)."""
    out = {}
    with fits.open(path) as hdul:
        for hdu in hdul[1:]:
            if hdu.name == "AXAF_QE":
                e, q = np.asarray(hdu.data["ENERGY"], float), np.asarray(hdu.data["QE"], float)
                out[int(hdu.header["CCD_ID"])] = np.interp(centres, e, q)
    return out


def read_contam(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """Per CCD: energy, mu, year, tau0, tau1, fxy (blocks) and the block size in pixels."""
    out = {}
    with fits.open(path) as hdul:
        for hdu in hdul[1:]:
            row, ne, nt = hdu.data[0], int(hdu.data[0]["n_energy"]), int(hdu.data[0]["n_time"])
            out[int(hdu.header["CCD_ID"])] = {
                "energy": np.asarray(row["energy"][:ne], float),
                "mu": np.asarray(row["mu"][:ne], float),
                "year": 1998.0 + np.asarray(row["time"][:nt], float) / SECONDS_PER_YEAR,
                "tau0": np.asarray(row["tau0"][:nt], float),
                "tau1": np.asarray(row["tau1"][:nt], float),
                "fxy": np.asarray(row["fxy"], float),
                "block": float(hdu.header["FXYBLK"]),
            }
    return out


def radial_fxy(contam: dict, ccds: tuple[int, ...], centre_of: dict) -> np.ndarray:
    """Mean of the spatial map fxy over the chips' area at each off-axis angle of THETA_GRID."""
    r_all, f_all = [], []
    for ccd in ccds:
        fxy, blk = contam[ccd]["fxy"], contam[ccd]["block"]
        iy, ix = np.indices(fxy.shape)  # fxy[cy, cx] as in MARX aciscontam.c
        x0, y0 = centre_of[ccd]
        r = np.hypot((ix + 0.5) * blk - x0, (iy + 0.5) * blk - y0) * ARCMIN_PER_PIXEL
        r_all.append(r.ravel())
        f_all.append(fxy.ravel())
    r, f = np.concatenate(r_all), np.concatenate(f_all)
    half = 0.5 * (THETA_GRID[1] - THETA_GRID[0])
    out = np.full(THETA_GRID.size, np.nan)
    for i, t in enumerate(THETA_GRID):
        sel = np.abs(r - t) <= max(half, 2 * blk * ARCMIN_PER_PIXEL)
        if sel.any():
            out[i] = f[sel].mean()
    # Beyond the chips' corners: hold the outermost value.
    good = np.isfinite(out)
    return np.interp(THETA_GRID, THETA_GRID[good], out[good])


def extend(year: np.ndarray, tau: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Extend a tau(t) series past its end with the GROWTH_PHASES, at ``scale`` x its last
    two years' mean rate."""
    rate = (tau[-1] - np.interp(year[-1] - 2.0, year, tau)) / 2.0 * scale
    new_years = np.arange(np.ceil(year[-1] * 4) / 4, END_YEAR + 1e-9, 0.25)
    starts = np.array([p[0] for p in GROWTH_PHASES] + [np.inf])
    rel = np.array([p[1] for p in GROWTH_PHASES])
    grid = np.concatenate([[year[-1]], new_years])
    dt = np.diff(grid)
    mids = 0.5 * (grid[1:] + grid[:-1])
    phase = np.clip(np.searchsorted(starts, mids, side="right") - 1, 0, rel.size - 1)
    added = np.cumsum(rate * rel[phase] * dt)
    return np.concatenate([year, new_years]), np.concatenate([tau, tau[-1] + added])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qe", type=Path, required=True)
    ap.add_argument("--contam", type=Path, required=True)
    ap.add_argument("--mirror-arf", type=Path, required=True)
    ap.add_argument("--mirror-pha", type=Path, default=None)
    ap.add_argument("--rmf-fi", type=Path, action="append", required=True)
    ap.add_argument("--rmf-bi", type=Path, action="append", required=True)
    ap.add_argument(
        "--mirror-spatial-contam",
        action="store_true",
        help="invert the mirror ARF with the N0007 spatial term at its off-axis angle "
        "(default: uniform term only, see docs)",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    lo, hi = energy_bins()
    centres = 0.5 * (lo + hi)
    qe_ccd = read_qe(args.qe, centres)
    contam = read_contam(args.contam)
    t = {"FI": FI_CCDS, "BI": BI_CCDS}
    qe = {c: np.mean([qe_ccd[i] for i in t[c]], axis=0) for c in t}
    mu = {c: np.mean([np.interp(centres, contam[i]["energy"], contam[i]["mu"]) for i in t[c]],
                     axis=0) for c in t}  # fmt: skip
    year = contam[7]["year"]
    tau0 = {c: np.mean([np.interp(year, contam[i]["year"], contam[i]["tau0"]) for i in t[c]],
                       axis=0) for c in t}  # fmt: skip
    tau1 = {c: np.mean([np.interp(year, contam[i]["year"], contam[i]["tau1"]) for i in t[c]],
                       axis=0) for c in t}  # fmt: skip
    fxy = {"FI": radial_fxy(contam, FI_CCDS, I_ARRAY_CENTRE),
           "BI": radial_fxy(contam, BI_CCDS, {7: S3_AIMPOINT})}  # fmt: skip

    # Mirror: the 1575 ARF divided by QE_S3 x contaminant transmission x vignetting.
    ctx = response_context(args.mirror_arf, args.mirror_pha)
    arf = read_arf(args.mirror_arf, cache=None)
    e_arf = 0.5 * (arf.energ_lo + arf.energ_hi)
    # The 1575 ARF (CSC, 2008) applied contamN0004, whose spatial term at the source's position
    # is unknown here; by default only the uniform term is divided out (docs: Response family).
    fxy_mirror = fxy["BI"] if args.mirror_spatial_contam else np.zeros_like(THETA_GRID)
    depth = tau067(year, tau0["BI"], tau1["BI"], THETA_GRID, fxy_mirror,
                   np.array([ctx["epoch_year"]]), np.array([ctx["theta_arcmin"]]))  # fmt: skip
    mu_arf = np.interp(e_arf, centres, mu["BI"])
    denom = (np.interp(e_arf, centres, qe["BI"]) * np.exp(-mu_arf * depth[0])
             * vignetting_factor(e_arf, ctx["theta_arcmin"])[0])  # fmt: skip
    mirror_arf = arf.specresp / denom
    tail = e_arf > e_arf.max() - 0.8  # log-linear extrapolation past the ARF's last bin
    slope, icpt = np.polyfit(e_arf[tail], np.log(mirror_arf[tail]), 1)
    mirror = np.where(centres <= e_arf.max(), np.interp(centres, e_arf, mirror_arf),
                      np.exp(icpt + slope * centres))  # fmt: skip

    # Contaminant growth after 2014.5, scaled to today's ACIS-S3 area at 0.5 keV.
    i05 = int(np.argmin(np.abs(centres - 0.5)))
    need_tau0 = -np.log(BI_AREA_05KEV_2025_CM2 / (mirror[i05] * qe["BI"][i05])) / mu["BI"][i05]
    unit_year, unit = extend(year, tau0["BI"], 1.0)
    scale = (need_tau0 - tau0["BI"][-1]) / (np.interp(2025.0, unit_year, unit) - tau0["BI"][-1])
    ext = {}
    for c in t:
        y_ext, ext[f"tau0_{c}"] = extend(year, tau0[c], scale)
        ext[f"tau1_{c}"] = extend(year, tau1[c], scale)[1]

    table = {
        "energy_kev": centres, "mirror_cm2": mirror, "contam_year": y_ext,
        "fxy_theta_arcmin": THETA_GRID,
        **{f"qe_{c}": qe[c] for c in t}, **{f"mu_{c}": mu[c] for c in t},
        **{f"fxy_{c}": fxy[c] for c in t}, **ext,
        "fwhm_FI": fwhm_law(read_rmf(p, cache=None) for p in args.rmf_fi),
        "fwhm_BI": fwhm_law(read_rmf(p, cache=None) for p in args.rmf_bi),
        "contam_growth_scale": np.array([scale]),
        "mirror_context": np.array([f"{args.mirror_arf.name} {ctx['date_obs']} "
                                    f"theta={ctx['theta_arcmin']:.2f} "
                                    f"spatial_contam={args.mirror_spatial_contam}"]),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **table)
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB); growth scale after "
        f"2014.5 = {scale:.2f} x the 2012.5-2014.5 rate; FWHM^2 coefficients FI "
        f"{table['fwhm_FI'].round(5)}, BI {table['fwhm_BI'].round(5)}"
    )


if __name__ == "__main__":
    main()
