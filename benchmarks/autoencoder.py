"""Benchmark the spectral autoencoder against the physical limit and the PCA baseline.

    PYTHONPATH=src python benchmarks/autoencoder.py [--n 20000] [--set SET.h5] [--epochs N]
        [--model DIR] [--error-draws 16]

Uses ``xlatent.physics.simulator.simulate`` (or a set written by ``xlatent simulate``), or
with ``--source toy`` the model tests' stand-in generator ``tests/model/toy.py``. Splits the
set 80/20 (seeded), trains the default autoencoder and the PCA baseline on the 80%, and
prints on the 20% held out: the mean Poisson deviance of the simulator's noiseless
``expected_counts`` (the physical limit), of the autoencoder's and of PCA's reconstructions,
the training wall time and the encoding throughput, plain and with latent errors (``--error-draws``
redraws each) and the OOD score. ``--model DIR`` skips training. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from xlatent.core import SpectrumSet
from xlatent.model import PCABaseline, SpectralAutoencoder, poisson_deviance


def load_set(args: argparse.Namespace) -> tuple[SpectrumSet, str]:
    if args.set:
        return SpectrumSet.read(args.set), args.set
    if args.source == "toy":
        return _toy().toy_spectrum_set(args.n, seed=args.seed), "tests/model/toy.py (stand-in)"
    from xlatent.physics.simulator import simulate

    return simulate(args.n, seed=args.seed), "xlatent.physics.simulator"


def _toy() -> ModuleType:
    """The model tests' stand-in generator, ``tests/model/toy.py`` (not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "model" / "toy.py"
    spec = importlib.util.spec_from_file_location("xlatent_test_toy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--set", help="a SpectrumSet .h5 with expected_counts (overrides --n)")
    ap.add_argument("--source", choices=["auto", "sim", "toy"], default="auto", help="auto = sim")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the model's default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loss", choices=["poisson", "mse"], default="poisson")
    ap.add_argument("--decoder", choices=["mlp", "transformer"], default="mlp")
    ap.add_argument("--save", help="also save the trained autoencoder to this directory")
    ap.add_argument("--model", help="a trained model directory: skip training (timing only)")
    ap.add_argument("--error-draws", type=int, default=16, help="K of the with-errors encode")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    s, source = load_set(args)
    if s.expected_counts is None:
        raise SystemExit("the set has no expected_counts (simulator truth)")
    print(f"set: {len(s)} spectra from {source} ({time.perf_counter() - t0:.1f} s)")
    perm = np.random.default_rng(args.seed).permutation(len(s))
    n_test = len(s) // 5
    test, train = s[np.sort(perm[:n_test])], s[np.sort(perm[n_test:])]
    print(f"split: {len(train)} train, {len(test)} test")

    opts = {"loss": args.loss, "decoder": args.decoder, "seed": args.seed}
    if args.epochs is not None:
        opts["epochs"] = args.epochs
    t0 = time.perf_counter()
    if args.model:
        ae = SpectralAutoencoder.load(args.model, device="cpu")
    else:
        ae = SpectralAutoencoder(latent_dim=8, **opts).fit(train)
    t_train = time.perf_counter() - t0
    if args.save:
        ae.save(args.save)
    t0 = time.perf_counter()
    pca = PCABaseline(n_components=8).fit(train)
    t_pca = time.perf_counter() - t0

    ae.transform(test[np.arange(min(512, len(test)))])  # warm-up
    t0 = time.perf_counter()
    ae.transform(s)  # the whole set: throughput incl. preprocessing
    rate = len(s) / (time.perf_counter() - t0)
    # With errors: K Poisson redraws each, plus the reconstruction and the OOD score.
    sub = s[np.arange(min(2000, len(s)))]
    t0 = time.perf_counter()
    ae.encode(sub, args.error_draws)
    rate_err = len(sub) / (time.perf_counter() - t0)

    d_truth = poisson_deviance(test.counts, test.expected_counts + test.background)
    d_ae = ae.deviance(test)
    d_pca = pca.deviance(test)
    net = test.net_counts.sum(axis=1)
    print(f"epochs run: {len(ae.history_)}; train time {t_train:.1f} s; PCA fit {t_pca:.1f} s")
    print(f"encoding: {rate:.0f} spectra/s ({len(s)} spectra, {args.threads} threads)")
    print(
        f"encoding with errors (K = {args.error_draws} redraws) and ood_score: "
        f"{rate_err:.0f} spectra/s ({len(sub)} spectra)"
    )
    print(f"mean Poisson deviance on the test split (m = {s.grid.n_bins} bins):")
    print(f"  truth (noiseless expected_counts): {d_truth.mean():.3f}")
    print(f"  autoencoder: {d_ae.mean():.3f}  ({100 * (d_ae.mean() / d_truth.mean() - 1):+.2f}%)")
    print(
        f"  PCA (8 comp.): {d_pca.mean():.3f}  ({100 * (d_pca.mean() / d_truth.mean() - 1):+.2f}%)"
    )
    edges = [0, 30, 100, 300, 1000, 3000, np.inf]
    print("  by net counts:   n   truth      AE     PCA")
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (net >= lo) & (net < hi)
        if sel.any():
            print(
                f"  [{lo:>5}, {hi:>5}) {sel.sum():5d} {d_truth[sel].mean():7.2f} "
                f"{d_ae[sel].mean():7.2f} {d_pca[sel].mean():7.2f}"
            )


if __name__ == "__main__":
    main()
