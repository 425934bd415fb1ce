"""Benchmark the spectral autoencoder against the physical limit and the PCA baseline.

    PYTHONPATH=src python benchmarks/autoencoder.py [--n 20000] [--set SET.h5] [--epochs N]
        [--model DIR|pretrained] [--error-draws 16] [--threads 1 2] [--repeats 3]

Uses ``xlatent.physics.simulator.simulate`` (or a set written by ``xlatent simulate``), or
with ``--source toy`` the model tests' stand-in generator ``tests/model/toy.py``. Splits the
set 80/20 (seeded), trains the default autoencoder and the PCA baseline on the 80%, and
prints on the 20% held out: the mean Poisson deviance of the simulator's noiseless
``expected_counts`` (the physical limit), of the autoencoder's and of PCA's reconstructions,
the training wall time and the encoding throughput with each of ``--threads``: latents only,
the catalogue (latents + reconstruction deviance + ``ood_score``) and the catalogue with latent
errors (``--error-draws`` redraws each), best of ``--repeats`` runs. ``--model DIR`` skips
training (``--model pretrained``: the shipped model). Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
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


#: Spectra encoded with errors (K redraws each: K + 1 encoder passes per spectrum).
ERR_SPECTRA = 2000


def _best_rate(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Spectra per second of the fastest of ``repeats`` runs of ``fn`` (the CPU may be shared:
    the best run is the one least disturbed)."""
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def throughput(
    ae: SpectralAutoencoder, s: SpectrumSet, threads: int, draws: int, repeats: int
) -> tuple[float, float, float]:
    """Spectra/s on ``threads`` torch threads, everything from the SpectrumSet in memory on:
    (a) latents only (``transform``), (b) the catalogue ``xlatent encode --error-draws 0``
    writes (latents, reconstruction deviance, ``ood_score``), (c) with ``draws`` redraws."""
    torch.set_num_threads(threads)
    sub = s[np.arange(min(ERR_SPECTRA, len(s)))]
    ae.transform(sub[np.arange(min(512, len(sub)))])  # warm-up
    return (
        _best_rate(lambda: ae.transform(s), len(s), repeats),
        _best_rate(lambda: ae.encode_catalog(s, n_draws=0), len(s), repeats),
        _best_rate(lambda: ae.encode_catalog(sub, n_draws=draws), len(sub), repeats),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--set", help="a SpectrumSet .h5 with expected_counts (overrides --n)")
    ap.add_argument("--source", choices=["auto", "sim", "toy"], default="auto", help="auto = sim")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the model's default")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="timed with each")
    ap.add_argument("--repeats", type=int, default=3, help="timings per figure (best kept)")
    ap.add_argument("--loss", choices=["poisson", "mse"], default="poisson")
    ap.add_argument("--decoder", choices=["mlp", "transformer"], default="mlp")
    ap.add_argument("--save", help="also save the trained autoencoder to this directory")
    ap.add_argument("--model", help="a trained model directory: skip training (timing only)")
    ap.add_argument("--error-draws", type=int, default=16, help="K of the with-errors encode")
    args = ap.parse_args()
    torch.set_num_threads(max(args.threads))

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
        ae = (SpectralAutoencoder.pretrained(device="cpu") if args.model == "pretrained"
              else SpectralAutoencoder.load(args.model, device="cpu"))  # fmt: skip
    else:
        ae = SpectralAutoencoder(latent_dim=8, **opts).fit(train)
    t_train = time.perf_counter() - t0
    if args.save:
        ae.save(args.save)
    t0 = time.perf_counter()
    pca = PCABaseline(n_components=8).fit(train)
    t_pca = time.perf_counter() - t0

    rates = {k: throughput(ae, s, k, args.error_draws, args.repeats) for k in args.threads}
    d_truth = poisson_deviance(test.counts, test.expected_counts + test.background)
    d_ae = ae.deviance(test)
    d_pca = pca.deviance(test)
    net = test.net_counts.sum(axis=1)
    print(f"epochs run: {len(ae.history_)}; train time {t_train:.1f} s; PCA fit {t_pca:.1f} s")
    print(f"encoding throughput, spectra/s (best of {args.repeats}; {len(s)} spectra, "
          f"{min(len(s), ERR_SPECTRA)} with errors):")  # fmt: skip
    print(f"  {'threads':>7} {'latents':>9} {'catalogue':>10} {f'errors K={args.error_draws}':>12}")
    for k, (a, b, c) in rates.items():
        print(f"  {k:>7} {a:9.0f} {b:10.0f} {c:12.0f}")
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
