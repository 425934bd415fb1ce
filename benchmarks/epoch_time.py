"""Training time per spectrum and epoch (t_ep of docs/scaling.md), on a CPU or a GPU.

    PYTHONPATH=src python benchmarks/epoch_time.py [--set SET.h5 | --n 4000] \\
        [--device auto|cpu|cuda] [--batch-sizes 256 1024 4096] [--epochs 6] [--threads N]

Fits the autoencoder (today's defaults but the batch size) on the set for a few epochs and
prints, per batch size, the median wall time of epochs 2 to the last (past start-up; each
epoch trains on 90% of the rows and scores the other 10%) and that time per spectrum of the
set, then the time to encode the set. Larger batches take fewer optimiser steps per epoch,
so their validation deviance (printed) is not comparable: this is a speed figure only.
Without ``--set`` it simulates ``--n`` spectra (seed 3).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xlatent.core import SpectrumSet
from xlatent.model import SpectralAutoencoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", help="a SpectrumSet file (default: simulate --n spectra)")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is start-up)")
    if args.set:
        s = SpectrumSet.read(args.set)
    else:
        from xlatent.physics.simulator import simulate

        s = simulate(args.n, seed=3)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    print(f"{len(s)} spectra; device {args.device}; {args.epochs} epochs per batch size")
    print(f"{'batch':>6} {'epoch s':>9} {'ms/spectrum':>12} {'first epoch s':>14} {'val/bin':>8}")
    model = None
    for bs in args.batch_sizes:
        model = SpectralAutoencoder(
            epochs=args.epochs, batch_size=bs, patience=args.epochs + 1, device=args.device,
            num_threads=args.threads, seed=0, progress=False,
        ).fit(s)  # fmt: skip
        elapsed = [h["elapsed_s"] for h in model.history_]
        epoch_s = float(np.median(np.diff(elapsed)))
        val = model.history_[-1]["val_deviance_per_bin"]
        print(f"{bs:>6} {epoch_s:>9.3f} {epoch_s / len(s) * 1e3:>12.4f} {elapsed[0]:>14.2f} "
              f"{val:>8.3f}", flush=True)  # fmt: skip
    assert model is not None
    model.transform(s[:256])  # start-up
    sync()
    t0 = time.perf_counter()
    model.transform(s)
    sync()
    print(f"encode {len(s)} spectra: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
