"""Where does a latent's sensitivity to the instrument come from: the encoder or the decoder?

    PYTHONPATH=src python benchmarks/response_diagnosis.py [--model DIR] [--n 3000] [--seed 7]
        [--real ../shared/data/real_spectra | --real none]

Issue 12 asks that the latents of the same sources under different responses agree to within
0.1 of the within-class spread (:mod:`xlatent.analysis.invariance`'s distance). This folds
``--n`` fresh sources through five members of the ACIS response family, all on-axis: ACIS-S3
(back-illuminated, BI) and ACIS-I (front-illuminated, FI) in 2001 and 2020, and the 2001 BI
area with the FI chip's RMF (an RMF swap alone), keeps the sources the 2001 BI response
detects, and encodes their *noiseless* spectra (expected counts + background: the instrument
alone, no photon noise) three ways:

- ``encoder``: the encoder's latent (no refinement);
- ``shipped``: as the model encodes by default (its ``refine_steps`` on its bright spectra);
- ``best fit``: the decoder's best-fitting latent for every spectrum (10 Gauss-Newton steps
  from the encoder's latent with a prior too wide to matter, :mod:`xlatent.model.refine`).

With ``--real`` (the default when ``../shared`` is there), the same sources also go through
three real Chandra responses and through real ARFs paired with another observation's RMF
(each ARF interpolated onto that RMF's energy bins): ObsID 1575 (ACIS-S3, BI, 2001), 9774
(ACIS-S3, BI, 2007) and 308 (ACIS-I, FI, 2000). The family's RMF depends on the chip type
only; a real RMF also changes with the epoch (gain, charge-transfer inefficiency), which the
swaps separate from the area. Two more responses split the RMF's part: 1575's area with a
Gaussian RMF of the resolution fitted to 1575's line cores and to 9774's (the family's kind of
RMF, :func:`gaussian_twin`): the width alone, and what a real RMF has beyond a Gaussian
(line centroids, low-energy tails). The real RMFs' line cores are printed first.

If the decoder described every response exactly, the best-fit latents would agree whatever
the response; what the encoder adds beyond them is its amortisation. Per pair of responses
it prints the median distance in within-class spreads (the spread measured on the default
sky's latents of the same sources). Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

# This script's folder is on sys.path when it runs: the real files' list is the one there.
from responses import REAL as REAL_FILES  # benchmarks/responses.py

from xlatent.analysis._common import class_labels
from xlatent.analysis.invariance import noiseless_spectra, within_class_sd
from xlatent.instrument import Response
from xlatent.instrument.acis import gaussian_rmf
from xlatent.instrument.family import chip_rmf, family_response, fwhm_law, fwhm_of_law
from xlatent.instrument.response import ARF, RMF, line_core, specresp_on
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.model import SpectralAutoencoder, load_model
from xlatent.pipeline import detected_rows, simulate_through

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_spectra"
#: The responses: (chip type, epoch); all on-axis.
RESPONSES = {"BI 2001": ("BI", 2001.0), "BI 2020": ("BI", 2020.0),
             "FI 2001": ("FI", 2001.0), "FI 2020": ("FI", 2020.0)}  # fmt: skip
RMF_SWAP = "BI 2001 area, FI RMF"
#: The pairs compared, by what differs between them.
PAIRS = (
    ("epoch (BI)", "BI 2001", "BI 2020"),
    ("epoch (FI)", "FI 2001", "FI 2020"),
    ("chip (2001)", "BI 2001", "FI 2001"),
    ("chip (2020)", "BI 2020", "FI 2020"),
    ("chip + epoch", "BI 2001", "FI 2020"),
    ("RMF only", "BI 2001", RMF_SWAP),
)
#: Real responses (``--real``): name -> (ARF, RMF) file names, those of
#: ``benchmarks/responses.py`` (one list of the real files).
REAL = {
    name: next(pair for pair in REAL_FILES if obsid in pair[0])
    for name, obsid in (("1575 (BI 2001)", "1575"), ("9774 (BI 2007)", "9774"),
                        ("308 (FI 2000)", "00308"))
}  # fmt: skip
#: Real ARF/RMF swaps: name -> (whose ARF, whose RMF).
REAL_SWAPS = {
    "9774 area, 1575 RMF": ("9774 (BI 2007)", "1575 (BI 2001)"),
    "1575 area, 9774 RMF": ("1575 (BI 2001)", "9774 (BI 2007)"),
    "308 area, 1575 RMF": ("308 (FI 2000)", "1575 (BI 2001)"),
}
#: Real ARFs with a Gaussian RMF of the resolution fitted to a real RMF's line cores (the
#: family's kind of RMF): name -> (whose ARF, whose RMF is fitted).
GAUSSIAN_SWAPS = {
    "1575 area, Gauss(1575)": ("1575 (BI 2001)", "1575 (BI 2001)"),
    "1575 area, Gauss(9774)": ("1575 (BI 2001)", "9774 (BI 2007)"),
}
REAL_PAIRS = (
    ("real: epoch (BI)", "1575 (BI 2001)", "9774 (BI 2007)"),
    ("  area only", "1575 (BI 2001)", "9774 area, 1575 RMF"),
    ("  RMF only", "1575 (BI 2001)", "1575 area, 9774 RMF"),
    ("  RMF width", "1575 area, Gauss(1575)", "1575 area, Gauss(9774)"),
    ("  RMF non-Gauss", "1575 (BI 2001)", "1575 area, Gauss(1575)"),
    ("real: chip", "1575 (BI 2001)", "308 (FI 2000)"),
    ("  area only", "1575 (BI 2001)", "308 area, 1575 RMF"),
    ("  RMF only", "308 (FI 2000)", "308 area, 1575 RMF"),
)
#: The decoder's best fit: Gauss-Newton steps, and a prior width that does not constrain.
FIT_STEPS, FIT_PRIOR_SIGMA = 10, 1e3


def real_responses(folder: Path) -> dict[str, Response]:
    """:data:`REAL` and :data:`REAL_SWAPS` read from ``folder``."""
    arfs = {k: read_arf(folder / a) for k, (a, _) in REAL.items()}
    rmfs = {k: read_rmf(folder / r) for k, (_, r) in REAL.items()}
    out = {k: Response(arfs[k], rmfs[k]) for k in REAL}
    for name, (a, r) in REAL_SWAPS.items():
        out[name] = Response(arf_onto(arfs[a], rmfs[r]), rmfs[r])
    for name, (a, r) in GAUSSIAN_SWAPS.items():
        twin = gaussian_twin(rmfs[r])
        out[name] = Response(arf_onto(arfs[a], twin), twin)
    return out


def gaussian_twin(rmf: RMF) -> RMF:
    """A Gaussian RMF on ``rmf``'s bins and channels with the resolution fitted to its line
    cores (:func:`~xlatent.instrument.family.fwhm_law`, floored as the family's)."""
    fwhm = fwhm_of_law(fwhm_law([rmf]), 0.5 * (rmf.energ_lo + rmf.energ_hi))
    return gaussian_rmf(rmf.energ_lo, rmf.energ_hi, rmf.e_min, rmf.e_max, fwhm)


def print_line_cores(folder: Path, energies: tuple[float, ...] = (0.7, 1.5, 3.0, 6.0)) -> None:
    """Each real RMF's line cores: centroid / E and FWHM (eV) at ``energies`` (keV)."""
    print("line cores of the real RMFs (half-maximum centroid / E, FWHM eV):")
    for name, (_, r) in REAL.items():
        rmf = read_rmf(folder / r)
        cores = [(e, *line_core(rmf, e)) for e in energies]
        print(f"  {name:<16} " + "  ".join(f"{e:g} keV {c / e:.4f} {1000 * w:4.0f}"
                                           for e, c, w in cores))  # fmt: skip


def arf_onto(arf: ARF, rmf: RMF) -> ARF:
    """``arf``'s area on ``rmf``'s energy bins (:func:`specresp_on`), as an ARF."""
    return ARF(rmf.energ_lo, rmf.energ_hi, specresp_on(arf, rmf), f"{arf.path} on {rmf.path}")


@contextmanager
def best_fit(model: Any) -> Iterator[None]:
    """``model`` refining every spectrum by FIT_STEPS steps under a prior too wide to matter
    inside the block: its latents are then the decoder's best fits."""
    keys = ("refine_steps", "refine_min_counts", "refine_prior_sigma")
    before = {k: getattr(model, k) for k in keys}
    model.set_params(refine_steps=FIT_STEPS, refine_min_counts=0.0,
                     refine_prior_sigma=FIT_PRIOR_SIGMA)  # fmt: skip
    try:
        yield
    finally:
        model.set_params(**before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pretrained", help="model folder or 'pretrained'")
    ap.add_argument("--n", type=int, default=3000, help="sources simulated (before detection)")
    ap.add_argument("--seed", type=int, default=7, help="simulation seed of the sources")
    ap.add_argument("--real", default=str(REAL_DIR),
                    help="folder of the real ARF/RMF files, or 'none'")  # fmt: skip
    args = ap.parse_args()
    real = {} if args.real == "none" else real_responses(Path(args.real))
    if real:
        print_line_cores(Path(args.real))
    if args.model == "pretrained":
        model = SpectralAutoencoder.pretrained()
    else:
        model = load_model(args.model)

    first = "BI 2001"
    sets = {name: simulate_through(args.n, args.seed, response=family_response(chip, year, 0.0))
            for name, (chip, year) in RESPONSES.items()}  # fmt: skip
    swapped = Response(family_response("BI", 2001.0, 0.0).arf, chip_rmf("FI"))
    sets[RMF_SWAP] = simulate_through(args.n, args.seed, response=swapped)
    sets["default sky"] = simulate_through(args.n, args.seed)
    for name, response in real.items():
        sets[name] = simulate_through(args.n, args.seed, response=response)
    sets = detected_rows(sets, first)
    clean = {name: noiseless_spectra(s) for name, s in sets.items()}

    ref = sets["default sky"]
    sd = within_class_sd(model.transform(ref), class_labels(ref.meta))
    spread = float(np.sqrt((sd**2).sum()))
    steps = model.refine_steps
    latents: dict[str, dict[str, np.ndarray]] = {}
    try:
        model.set_params(refine_steps=0)
        latents["encoder"] = {k: model.transform(s) for k, s in clean.items()}
    finally:
        model.set_params(refine_steps=steps)
    latents["shipped"] = {k: model.transform(s) for k, s in clean.items()}
    with best_fit(model):
        latents["best fit"] = {k: model.transform(s) for k, s in clean.items()}

    counts = {k: float(np.median(s.expected_counts.sum(axis=1))) for k, s in sets.items()}
    print(f"{len(ref)} sources detected through {first} (seed {args.seed}); median noiseless "
          "source counts: " + ", ".join(f"{k} {v:.0f}" for k, v in counts.items()))  # fmt: skip
    print(f"model: {args.model} (refine_steps {steps} above {model.refine_min_counts:g} "
          f"counts, prior {model.refine_prior_sigma:g}); "
          f"within-class spread {spread:.3f} (default sky)")  # fmt: skip
    print(f"\n{'differs':<16} {'pair':<42} " + " ".join(f"{k:>9}" for k in latents))
    for what, a, b in PAIRS + (REAL_PAIRS if real else ()):
        meds = [np.median(np.linalg.norm(z[a] - z[b], axis=1)) / spread for z in latents.values()]
        print(f"{what:<16} {a + ' vs ' + b:<42} " + " ".join(f"{m:9.3f}" for m in meds))


if __name__ == "__main__":
    main()
