"""Encode-time refinement (``model.refine``): fit, latent stability and cost per setting.

    PYTHONPATH=src python benchmarks/refinement.py [--model DIR] [--n 20000] [--seed 1]
        [--steps 0 1 2] [--sigma 0.2 0.1 0.3 1000] [--twins 600]

Simulates a fresh default sky (``--n`` spectra, ``--seed``; the shipped model trained on seed
0) and, for every (steps, prior σ) pair (steps 0 once: the encoder alone), prints on the sky's
brightest count decile (by net counts) the deviance ratio to the noiseless truth (a ratio of
means, as ``evaluate``'s ``per_counts_decile``), split into spectra that pile (λ >= 0.01
incident core counts per frame) and those that do not, and the refinement's time (best of
three, one torch thread, the encoder's own time subtracted); and, on ``--twins`` sources with
>= 1,000 net counts drawn twice (``pipeline.poisson_twin``, as the simulator draws), the median
distance between the two latents in units of each latent's standard deviation over the sky.
σ = 1000 is a prior too wide to matter (a plain Gauss-Newton fit). Figures are printed, not
asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xlatent.model import load_model, poisson_deviance
from xlatent.model.preprocess import prepare
from xlatent.physics.simulator import simulate
from xlatent.pipeline import poisson_twin


def best_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: pretrained)")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.2, 0.1, 0.3, 1000.0])
    ap.add_argument("--twins", type=int, default=600)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    s = simulate(args.n, seed=args.seed)
    net = s.counts.sum(1) - s.background.sum(1)
    decile = s[np.flatnonzero(net >= np.quantile(net, 0.9))]
    piled = prepare(decile).pileup[:, 0] >= 0.01
    truth = poisson_deviance(decile.counts, decile.expected_counts + decile.background)
    bright = s[np.flatnonzero(net >= 1000)[: args.twins]]
    twin_a, twin_b = poisson_twin(bright, args.seed), poisson_twin(bright, args.seed + 1)
    model.set_params(refine_steps=0)
    spread = model.transform(s).std(0)
    encoder_s = best_time(lambda: model.transform(decile))
    print(
        f"{len(decile)} spectra in the brightest decile (>= {np.quantile(net, 0.9):.0f} net "
        f"counts; {piled.sum()} pile), {len(bright)} twin sources; model "
        f"{args.model or 'pretrained'}"
    )
    print(f"{'steps':>5} {'sigma':>7} {'decile':>7} {'piled':>7} {'unpiled':>7} "
          f"{'twin dist':>9} {'refine s':>8}")  # fmt: skip
    sigma_before = model.refine_prior_sigma
    try:
        for steps in args.steps:
            for sigma in args.sigma if steps else args.sigma[:1]:
                model.set_params(refine_steps=steps, refine_prior_sigma=sigma)
                recon = model.reconstruct(decile)
                dev = poisson_deviance(decile.counts, recon + decile.background)
                ratio = [dev[k].mean() / truth[k].mean() for k in (slice(None), piled, ~piled)]
                dz = (model.transform(twin_a) - model.transform(twin_b)) / spread
                cost = best_time(lambda: model.transform(decile)) - encoder_s if steps else 0.0
                print(f"{steps:>5} {sigma if steps else float('nan'):>7.3g} {ratio[0]:>7.3f} "
                      f"{ratio[1]:>7.3f} {ratio[2]:>7.3f} "
                      f"{np.median(np.linalg.norm(dz, axis=1)):>9.3f} {cost:>8.2f}")  # fmt: skip
    finally:
        model.set_params(refine_prior_sigma=sigma_before)


if __name__ == "__main__":
    main()
