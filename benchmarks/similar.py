"""Benchmark ``xlatent similar``: index build time and time per query on a CSC-sized catalogue.

    PYTHONPATH=src python benchmarks/similar.py [--n 400000] [--queries 300] [--k 10]

Synthetic 8-d latents (clustered like a real catalogue: 8 Gaussian blobs of unequal size),
once without and once with ``latent_<i>_err`` columns (errors differing by up to a factor 3
between spectra, which makes every query re-rank ``max(100, 10 (k + 1))`` candidates). Prints
the one-off build time of :class:`xlatent.analysis.similar.LatentIndex` and the mean and 95th
percentile time of one :func:`xlatent.analysis.similar.similar` call (locate the id, query,
build the table) reusing the index. Target: <= 10 ms per query at 400,000 spectra.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from xlatent.analysis.similar import LatentIndex, similar


def catalogue(n: int, d: int, errors: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.dirichlet(np.ones(8) * 2.0)
    blob = rng.choice(8, size=n, p=sizes)
    z = (
        rng.normal(0, 3, (8, d))[blob]
        + rng.normal(0, 1, (n, d)) * rng.uniform(0.3, 1.5, (8, d))[blob]
    )
    df = pd.DataFrame(z, columns=[f"latent_{i}" for i in range(d)])
    df.insert(0, "spec_id", [f"b{i:07d}" for i in range(n)])
    df["name"] = [f"2CXO J{i // 3:07d}" for i in range(n)]  # ~3 observations per source
    df["source_class"] = np.array(["AGN", "YSO", "LM-STAR", "HM-STAR", "NS", "LMXB", "CV", "HMXB"])[
        blob
    ]
    df["net_counts_b"] = 10 ** rng.uniform(1, 4, n)
    if errors:
        e = rng.uniform(0.05, 0.15, (n, d))
        for i in range(d):
            df[f"latent_{i}_err"] = e[:, i]
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400_000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"{args.n:,} synthetic {args.d}-d latents, k = {args.k}, {args.queries} queries")
    for errors in (False, True):
        df = catalogue(args.n, args.d, errors, args.seed)
        t0 = time.perf_counter()
        index = LatentIndex(df)
        build = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed + 1)
        ids = df["spec_id"].to_numpy()[rng.integers(0, args.n, args.queries)]
        similar(df, ids[0], args.k, index=index)  # warm-up
        times = []
        for ident in ids:
            t = time.perf_counter()
            similar(df, ident, args.k, index=index)
            times.append(time.perf_counter() - t)
        ms = 1e3 * np.array(times)
        label = "with latent errors   " if errors else "without latent errors"
        print(
            f"{label}: build {build:.2f} s; per query mean {ms.mean():.2f} ms, "
            f"p95 {np.percentile(ms, 95):.2f} ms"
        )


if __name__ == "__main__":
    main()
