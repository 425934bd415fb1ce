"""Does the model survive the instrument? Fresh sources through four real Chandra responses.

    PYTHONPATH=src python benchmarks/responses.py --model DIR --set TRAIN_SET.h5 [--n 2000]
    PYTHONPATH=src python benchmarks/responses.py --train [--train-n 20000] [--single-response]

Simulates ``--n`` sources with a seed the model never trained on (one more than the largest
``simulate`` seed of the training set, or ``--seed``) through the default sky and through
each real ARF/RMF pair in ``../shared/data/real_spectra`` (ObsIDs 308, 1878, 1575, 9774; the
same sources, row by row), encodes them with the model and prints per response (issue 12's
"Done when" table): mean broad-band net counts, the deviance ratio to the noiseless truth,
the loss (mean Poisson deviance per bin; the truth's in parentheses), the 8-class balanced
accuracy of a probe fitted on the training set's 'train' latents (default sky) and its change
from that probe on the set's 'test' latents, and the median latent distance to the default
sky in within-class spread units beside the photon-noise floor and the same distance for the
noiseless spectra (:mod:`xlatent.analysis.invariance`). ``--train`` simulates a training
set (``--train-n``, seed ``--train-seed``; ``--single-response``: through the built-in
response only, the sky before issue 12) and trains ``SpectralAutoencoder(latent_dim=8,
seed=0)`` on its 'train' rows first, as the demo does (``--threads 1`` on a shared machine;
``--consistency W``: the consistency weight, :mod:`xlatent.model.augment`).
Figures are printed (and written to ``--out``), not asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from xlatent.analysis._common import dumps
from xlatent.analysis.invariance import NOISE_TWIN, response_invariance
from xlatent.core import SpectrumSet
from xlatent.instrument import Response
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.pipeline import detected_rows, fresh_seed, poisson_twin, simulate_through

ROOT = Path(__file__).resolve().parents[1]
#: The four real ARF/RMF pairs (file names in the real-spectra folder).
REAL = (
    ("acisf00308_000N001_r0044_arf3.fits", "acisf00308_000N001_r0044_rmf3.fits"),
    ("acisf01878_000N001_r0100_arf3.fits", "acisf01878_000N001_r0100_rmf3.fits"),
    ("acisf01575_001N001_r0085_arf3.fits.gz", "acisf01575_001N001_r0085_rmf3.fits.gz"),
    ("9774.arf", "9774.rmf"),
)
DEFAULT_SKY = "default sky"


def real_responses(folder: Path) -> dict[str, Response]:
    """The real responses by a readable name: ObsID, ACIS chips (DETNAM) and year."""
    from astropy.io import fits

    out = {}
    for arf_name, rmf_name in REAL:
        with fits.open(folder / arf_name) as hdul:
            h = hdul[1].header
            name = f"ObsID {h.get('OBS_ID')} {h.get('DETNAM')} {str(h.get('DATE-OBS'))[:4]}"
        out[name] = Response(read_arf(folder / arf_name), read_rmf(folder / rmf_name))
    return out


def train(args: argparse.Namespace) -> tuple[Path, Path]:
    """Simulate a training set, fit the demo's autoencoder on its 'train' rows, save both."""
    from xlatent.instrument import default_response
    from xlatent.model import SpectralAutoencoder
    from xlatent.physics.simulator import simulate

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    kw = {"response": default_response()} if args.single_response else {}
    s = simulate(args.train_n, seed=args.train_seed, **kw)
    set_path = s.write(args.out / "train_set.h5")
    rows = np.flatnonzero(s.meta["split"].to_numpy() == "train")
    kw = {} if args.epochs is None else {"epochs": args.epochs}
    if args.threads is not None:  # on a shared machine one thread avoids OpenMP contention
        kw["num_threads"] = args.threads
    if args.consistency is not None:
        kw["consistency"] = args.consistency
    model = SpectralAutoencoder(latent_dim=8, seed=0, **kw).fit(s[rows])
    model_dir = args.out / "model"
    model.save(model_dir)
    sky = "single-response (built-in ACIS-S)" if args.single_response else "default"
    print(f"trained on {rows.size} of {args.train_n} {sky}-sky spectra (seed "
          f"{args.train_seed}, consistency {model.consistency:g}) in "
          f"{time.perf_counter() - t0:.0f} s -> {model_dir}")  # fmt: skip
    return model_dir, Path(set_path)


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="model directory (from xlatent train)")
    p.add_argument("--set", type=Path, help="the model's training set (.h5, 'split' column)")
    p.add_argument("--train", action="store_true", help="simulate a set and train a model first")
    p.add_argument("--train-n", type=int, default=20000)
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--single-response", action="store_true",
                   help="with --train: the old one-response sky (built-in response)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None, help="with --train: maximum epochs")
    p.add_argument("--threads", type=int, default=None, help="with --train: torch threads")
    p.add_argument("--consistency", type=float, default=None,
                   help="with --train: the consistency weight (default: the model's)")  # fmt: skip
    p.add_argument("--n", type=int, default=2000, help="fresh sources per response")
    p.add_argument("--seed", type=int, default=None, help="their seed (default: fresh)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/real_spectra")
    p.add_argument("--out", type=Path, default=Path("bench_responses"))
    args = p.parse_args()
    if args.train:
        args.model, args.set = train(args)
    elif args.model is None or args.set is None:
        p.error("give --model and --set, or --train")

    from xlatent.model import load_model

    t0 = time.perf_counter()
    model = load_model(args.model)
    reference = SpectrumSet.read(args.set)
    seed = fresh_seed(reference) if args.seed is None else args.seed
    pairs = {DEFAULT_SKY: simulate_through(args.n, seed, None, reference.grid)}
    for name, response in real_responses(args.data).items():
        pairs[name] = simulate_through(args.n, seed, None, reference.grid, response=response)
    pairs = detected_rows(pairs, DEFAULT_SKY)  # the default sky's detections, in every set
    pairs[NOISE_TWIN] = poisson_twin(pairs[DEFAULT_SKY], seed)
    t_sim = time.perf_counter() - t0
    inv = response_invariance(model, pairs, reference, seed=0)
    ref = inv["reference"]
    n_kept = len(pairs[DEFAULT_SKY])
    print(f"\n{n_kept} of {args.n} fresh sources (seed {seed}; those the default sky "
          f"detects) per response; model {args.model}; probe "
          f"fitted on {ref['n_probe_train']} 'train' latents of {args.set}, "
          f"{ref['probe_bacc_8class']:.3f} on its {ref['n_test']} 'test' latents")  # fmt: skip
    head = (f"{'response':<24} {'counts':>7} {'dev ratio':>9} {'loss (truth)':>14} "
            f"{'probe bacc':>10} {'change':>7} {'latent dist':>11} {'noiseless':>9}")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    floor = inv.get("noise_floor", {}).get("median")
    for row in inv["table"]:
        r = inv["per_response"][row["response"]]
        dist, clean = row["distance_to_first"], row["distance_noiseless"]
        print(f"{row['response']:<24} {row['mean_counts']:>7.0f} {row['deviance_ratio']:>9.3f} "
              f"{r['mean_deviance_per_bin']:>6.3f} ({r['truth_mean_deviance_per_bin']:.3f}) "
              f"{row['probe_bacc_8class']:>10.3f} {row['probe_change']:>+7.3f} "
              f"{'' if dist is None else f'{dist:.3f}':>11} "
              f"{'' if clean is None else f'{clean:.3f}':>9}")  # fmt: skip
    print(
        f"latent distance: median over sources of |z - z_default| / within-class spread; "
        f"noise floor (default sky vs its Poisson twin) {floor:.3f}; noiseless: the same "
        "for the noiseless spectra (the instrument alone)"
    )
    total = time.perf_counter() - t0
    print(f"simulate {t_sim:.0f} s, encode + analyses {total - t_sim:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "responses.json").write_text(dumps({"seed": seed, "model": str(args.model),
                                                    "set": str(args.set), **inv}))  # fmt: skip
    return json.loads(dumps(inv))


if __name__ == "__main__":
    main()
