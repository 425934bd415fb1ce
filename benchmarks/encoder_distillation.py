"""An experiment, not a feature: does an encoder trained towards the decoder's fits become
instrument-invariant?

    PYTHONPATH=src python benchmarks/encoder_distillation.py --set sim.h5 --model DIR \\
        --out DIR2 [--epochs 8] [--reconstruction 0]
    PYTHONPATH=src python benchmarks/response_diagnosis.py --model DIR2   # then compare

``benchmarks/response_diagnosis.py`` shows that within one chip type the decoder's best-fitting
latent barely depends on the contaminant's year while the encoder's does. This fine-tunes the
encoder of ``--model`` (the decoder and the instrument model frozen) on the set's 'train' rows
to regress, from each noisy spectrum, the decoder's best fit of its noiseless truth
(``expected_counts`` + background; 10 Gauss-Newton steps, a prior too wide to matter), plus
``--reconstruction`` times the usual Poisson deviance per bin, and saves the model to
``--out`` (its calibration is the original's, hence stale). Prints the per-epoch losses.
Measured 2026-12-03 on the demo set and model: no more invariant (README, response section).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from response_diagnosis import best_fit  # the sibling script

from xlatent.analysis.invariance import noiseless_spectra
from xlatent.core import SpectrumSet
from xlatent.model import load_model
from xlatent.model.network import torch_poisson_deviance
from xlatent.model.preprocess import prepare
from xlatent.model.training import training_tensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", required=True, help="simulated set (with expected_counts)")
    ap.add_argument("--model", required=True, help="model folder to start from")
    ap.add_argument("--out", required=True, help="folder for the fine-tuned model")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--reconstruction", type=float, default=0.0,
                    help="weight of the deviance per bin beside the latent error")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)

    s = SpectrumSet.read(args.set)
    s = s[np.flatnonzero(s.meta["split"].astype(str).to_numpy() == "train")]
    model = load_model(args.model)
    t0 = time.perf_counter()
    with best_fit(model):
        target = model.transform(noiseless_spectra(s))
    print(f"{len(s)} training spectra; targets (decoder fits) in {time.perf_counter() - t0:.0f} s")

    net = model.net_
    data = training_tensors(prepare(s), torch.device("cpu"))
    data["target"] = torch.as_tensor(target, dtype=torch.float32)
    for name, p in net.named_parameters():
        p.requires_grad_(not name.startswith(("decoder", "instrument")))
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-4)
    net.train()
    for epoch in range(args.epochs):
        perm, sums = torch.randperm(len(s)), np.zeros(2)
        for k in range(0, len(s), 256):
            b = {key: v[perm[k : k + 256]] for key, v in data.items()}
            z = net.encode(b["feats"], b["glob"])
            latent = ((z - b["target"]) ** 2).sum(1).mean()
            log_p = net.log_shape(z, b["log_area"], b["pileup"])
            dev = torch_poisson_deviance(log_p, b["log_amp"], b["counts"], b["log_bkg"], b["clogc"])
            rec = (dev / log_p.shape[1]).mean()
            loss = latent + args.reconstruction * rec
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums += np.array([latent.item(), rec.item()]) * len(z)
        print(f"epoch {epoch}: latent squared error {sums[0] / len(s):.3f}, "
              f"deviance per bin {sums[1] / len(s):.4f}", flush=True)  # fmt: skip
    net.eval()
    model.save(args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
