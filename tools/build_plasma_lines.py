"""Build ``src/xlatent/physics/data/plasma_lines.npz``: the collisional-plasma table.

    python tools/build_plasma_lines.py CHIANTI_DIR [--out src/xlatent/physics/data/plasma_lines.npz]

Inputs (CHIANTI_DIR): the CHIANTI v11.0.2 tables (Dere et al. 1997; Del Zanna et al. 2021) as
tabulated by ChiantiPy in the public repository ``jeonggyukim/pyathena`` (branch
``photchem-full``, commit bd11b1a, folder ``data/microphysics/chianti_v11``), on 121
log-spaced temperatures 10^3-10^9 K, low-density limit:

- ``ioneq_<El>.txt``: CIE ion fractions x_q(T) (CHIANTI ``chianti.ioneq``);
- ``cool_BB_<El>.txt``: per-ion bound-bound (line) power Lambda_q(T) in erg cm^3 s^-1 per
  ion per electron (ChiantiPy ``ion.boundBoundLoss``);
- ``cool_FF_<El>.txt``, ``cool_FB_<El>.txt``: per-ion free-free and free-bound power (the FB
  column q is radiated when ion q+1 recombines, so it is weighted by x_{q+1}).

Elements: H, He (continuum only: their lines are below 0.1 keV) and C, N, O, Ne, Mg, Si, S,
Ar, Ca, Fe with Anders & Grevesse (1989) number abundances (``absorption.ABUNDANCES_ANGR``,
the XSPEC ``angr`` default). Ni and Al are not in the input tables (their L/K lines are minor
at CCD resolution).

CHIANTI's per-ion powers are bolometric, so each ion's line power is placed at its X-ray
transitions by a fixed recipe (the only assumptions made here; energies from NIST/standard
X-ray line lists, rounded to 1 eV):

- H-like ions: 85% at Ly-alpha, 15% at Ly-beta (= Ly-alpha x 32/27);
- He-like ions: 85% at He-alpha (resonance energy; the triplet is unresolved by ACIS), 15% at
  He-beta;
- Fe XVII (Ne-like, closed shell: practically all its line power is in 3-2 and 4-2 X-ray
  lines): 0.727 keV (3s, 17.1 A) 40%, 0.739 keV (16.8 A) 15%, 0.823 keV (3d, 15.0-15.3 A) 35%,
  1.02 keV (4d, 12.1 A) 10%;
- Fe XVIII-XXIV: 70% (Fe XXIV: 60%) of the line power in X-rays, the rest in their
  2s-2p EUV lines (94-255 A) which the ACIS band does not see; of the X-ray part 80% at
  the strongest 3-2 line and 20% at 1.27x that energy (4-2);
- every other ion (L- and M-shell ions of the light elements, Fe IX-XVI): lines below
  0.3 keV, not tabulated.

The continuum is tabulated as the bolometric FF + FB power of H + He and, separately, of
the metals (Z = 1), to be given the shape of thermal bremsstrahlung g(E,T) exp(-E/kT)
(two-photon emission is omitted). Output (float64 arrays):

- ``log_t_k`` (n_t,), ``kt_kev`` (n_t,);
- ``line_energy_kev`` (n_lines,), ``line_label`` (n_lines,) str;
- ``line_emissivity`` (n_t, n_lines): photons cm^3 s^-1 per n_e n_H at solar abundance;
- ``cont_hhe``, ``cont_metal`` (n_t,): bolometric continuum power in keV cm^3 s^-1 per n_e n_H.

It also prints the line fraction of the 0.5-2 keV energy flux at the temperatures and
abundances of ``tests/physics/test_plasma.py`` (the reference values quoted there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from xlatent.physics.absorption import ABUNDANCES_ANGR  # noqa: E402

K_KEV = 8.617333262e-8  # keV per K
ERG_PER_KEV = 1.602176634e-9
METALS = ("C", "N", "O", "Ne", "Mg", "Si", "S", "Ar", "Ca", "Fe")
ATOMIC_NUMBER = {"H": 1, "He": 2, "C": 6, "N": 7, "O": 8, "Ne": 10, "Mg": 12, "Si": 14,
                 "S": 16, "Ar": 18, "Ca": 20, "Fe": 26}  # fmt: skip
ROMAN = {6: "VI", 7: "VII", 8: "VIII", 10: "X", 12: "XII", 14: "XIV", 16: "XVI", 18: "XVIII",
         20: "XX", 26: "XXVI"}  # fmt: skip
HE_ROMAN = {6: "V", 7: "VI", 8: "VII", 10: "IX", 12: "XI", 14: "XIII", 16: "XV", 18: "XVII",
            20: "XIX", 26: "XXV"}  # fmt: skip
#: (Ly-alpha, He-alpha resonance, He-beta) energies in keV.
K_LINES_KEV = {
    "C": (0.3675, 0.3079, 0.3546), "N": (0.5003, 0.4307, 0.4979),
    "O": (0.6536, 0.5740, 0.6656), "Ne": (1.0215, 0.9220, 1.0740),
    "Mg": (1.4723, 1.3522, 1.5794), "Si": (2.0055, 1.8650, 2.1826),
    "S": (2.6197, 2.4606, 2.8839), "Ar": (3.3223, 3.1396, 3.6838),
    "Ca": (4.1058, 3.9024, 4.5840), "Fe": (6.9658, 6.7004, 7.8810),
}  # fmt: skip
#: Fe L ions (charge q) -> (strongest 3-2 line keV, X-ray share of the line power).
FE_L = {17: (0.873, 0.7), 18: (0.917, 0.7), 19: (0.966, 0.7), 20: (1.010, 0.7),
        21: (1.053, 0.7), 22: (1.056, 0.7), 23: (1.168, 0.6)}  # fmt: skip
FE_L_ROMAN = {17: "XVIII", 18: "XIX", 19: "XX", 20: "XXI", 21: "XXII", 22: "XXIII", 23: "XXIV"}
FE_XVII = ((0.727, 0.40), (0.739, 0.15), (0.823, 0.35), (1.020, 0.10))
LOG_T_RANGE = (5.8, 9.0)  # kT 0.054-86 keV


def read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(log T, values (n_t, n_ions)) of one pyathena/CHIANTI table; NaN -> 0."""
    data = np.loadtxt(path, comments="#")
    return data[:, 0], np.nan_to_num(data[:, 1:], nan=0.0)


def build(chianti_dir: Path) -> dict[str, np.ndarray]:
    lines: list[tuple[str, float, np.ndarray]] = []
    cont_hhe = cont_metal = None
    log_t = None
    for el in ("H", "He", *METALS):
        z = ATOMIC_NUMBER[el]
        log_t, x = read_table(chianti_dir / f"ioneq_{el}.txt")
        _, ff = read_table(chianti_dir / f"cool_FF_{el}.txt")
        _, fb = read_table(chianti_dir / f"cool_FB_{el}.txt")
        ab = ABUNDANCES_ANGR[el]
        # FB column q: recombination of ion q+1 onto q.
        cont = ab * ((x * ff).sum(axis=1) + (x[:, 1:] * fb[:, :-1]).sum(axis=1)) / ERG_PER_KEV
        if el in ("H", "He"):
            cont_hhe = cont if cont_hhe is None else cont_hhe + cont
            continue
        cont_metal = cont if cont_metal is None else cont_metal + cont
        _, bb = read_table(chianti_dir / f"cool_BB_{el}.txt")
        power = ab * x * bb / ERG_PER_KEV  # keV cm^3 s^-1 per n_e n_H, per ion
        ly_a, he_a, he_b = K_LINES_KEV[el]
        lines.append((f"{el} {ROMAN[z]} Lya", ly_a, 0.85 * power[:, z - 1]))
        lines.append((f"{el} {ROMAN[z]} Lyb", ly_a * 32 / 27, 0.15 * power[:, z - 1]))
        lines.append((f"{el} {HE_ROMAN[z]} Hea", he_a, 0.85 * power[:, z - 2]))
        lines.append((f"{el} {HE_ROMAN[z]} Heb", he_b, 0.15 * power[:, z - 2]))
        if el == "Fe":
            for e_kev, share in FE_XVII:
                lines.append((f"Fe XVII {e_kev:.3f}", e_kev, share * power[:, 16]))
            for q, (e_kev, x_share) in FE_L.items():
                r = FE_L_ROMAN[q]
                lines.append((f"Fe {r} 3-2", e_kev, 0.8 * x_share * power[:, q]))
                lines.append((f"Fe {r} 4-2", 1.27 * e_kev, 0.2 * x_share * power[:, q]))
    assert log_t is not None and cont_hhe is not None and cont_metal is not None
    keep = (log_t >= LOG_T_RANGE[0] - 1e-9) & (log_t <= LOG_T_RANGE[1] + 1e-9)
    energy = np.array([ln[1] for ln in lines])
    order = np.argsort(energy)
    emis = np.stack([ln[2] for ln in lines], axis=1)[keep][:, order] / energy[order]
    return {
        "log_t_k": log_t[keep],
        "kt_kev": 10 ** log_t[keep] * K_KEV,
        "line_energy_kev": energy[order],
        "line_label": np.array([lines[i][0] for i in order]),
        "line_emissivity": emis,
        "cont_hhe": cont_hhe[keep],
        "cont_metal": cont_metal[keep],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("chianti_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("src/xlatent/physics/data/plasma_lines.npz"))
    args = ap.parse_args()
    table = build(args.chianti_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **table)
    print(f"wrote {args.out}: {table['line_energy_kev'].size} lines, {table['kt_kev'].size} kT")
    from xlatent.physics.plasma import line_fraction_reference

    for z in (1.0, 0.3):
        for kt in (0.2, 0.5, 0.7, 1.0, 2.0, 4.0, 8.0):
            f = line_fraction_reference(kt, z, table)
            print(f"Z={z:.1f} kT={kt:4.1f} keV: line fraction of 0.5-2 keV flux {f:.3f}")


if __name__ == "__main__":
    main()
