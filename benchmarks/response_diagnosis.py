"""Where does a latent's sensitivity to the instrument come from: the encoder or the decoder?

    PYTHONPATH=src python benchmarks/response_diagnosis.py [--model DIR] [--n 3000] [--seed 7]

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

If the decoder described every response exactly, the best-fit latents would agree whatever
the response; what the encoder adds beyond them is its amortisation. Per pair of responses
it prints the median distance in within-class spreads (the spread measured on the default
sky's latents of the same sources). Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from xlatent.analysis._common import class_labels
from xlatent.analysis.invariance import noiseless_spectra, within_class_sd
from xlatent.instrument import Response
from xlatent.instrument.family import chip_rmf, family_response
from xlatent.model import SpectralAutoencoder, load_model, refine
from xlatent.pipeline import detected_rows, simulate_through

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
#: The decoder's best fit: Gauss-Newton steps, and a prior width that does not constrain.
FIT_STEPS, FIT_PRIOR_SIGMA = 10, 1e3


@contextmanager
def prior_sigma(sigma: float) -> Iterator[None]:
    """Refinement with a prior of width ``sigma`` inside the block."""
    old = refine.PRIOR_SIGMA
    refine.PRIOR_SIGMA = sigma
    try:
        yield
    finally:
        refine.PRIOR_SIGMA = old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pretrained", help="model folder or 'pretrained'")
    ap.add_argument("--n", type=int, default=3000, help="sources simulated (before detection)")
    ap.add_argument("--seed", type=int, default=7, help="simulation seed of the sources")
    args = ap.parse_args()
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
    sets = detected_rows(sets, first)
    clean = {name: noiseless_spectra(s) for name, s in sets.items()}

    ref = sets["default sky"]
    sd = within_class_sd(model.transform(ref), class_labels(ref.meta))
    spread = float(np.sqrt((sd**2).sum()))
    steps, min_counts = model.refine_steps, model.refine_min_counts
    latents: dict[str, dict[str, np.ndarray]] = {}
    try:
        model.set_params(refine_steps=0)
        latents["encoder"] = {k: model.transform(s) for k, s in clean.items()}
        model.set_params(refine_steps=steps)
        latents["shipped"] = {k: model.transform(s) for k, s in clean.items()}
        model.set_params(refine_steps=FIT_STEPS, refine_min_counts=0.0)
        with prior_sigma(FIT_PRIOR_SIGMA):
            latents["best fit"] = {k: model.transform(s) for k, s in clean.items()}
    finally:
        model.set_params(refine_steps=steps, refine_min_counts=min_counts)

    counts = {k: float(np.median(s.expected_counts.sum(axis=1))) for k, s in sets.items()}
    print(f"{len(ref)} sources detected through {first} (seed {args.seed}); median noiseless "
          "source counts: " + ", ".join(f"{k} {v:.0f}" for k, v in counts.items()))  # fmt: skip
    print(f"model: {args.model} (refine_steps {steps} above {min_counts:g} counts); "
          f"within-class spread {spread:.3f} (default sky)")  # fmt: skip
    print(f"\n{'differs':<14} {'pair':<34} " + " ".join(f"{k:>9}" for k in latents))
    for what, a, b in PAIRS:
        meds = [np.median(np.linalg.norm(z[a] - z[b], axis=1)) / spread for z in latents.values()]
        print(f"{what:<14} {a + ' vs ' + b:<34} " + " ".join(f"{m:9.3f}" for m in meds))


if __name__ == "__main__":
    main()
