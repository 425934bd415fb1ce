"""Simulator throughput on one core: ``python benchmarks/simulate.py [n]`` prints spectra/s.

Target: >= 2,000 spectra/s for the default (built-in ACIS-S response, 128-bin grid).
Run with ``OMP_NUM_THREADS=1`` (set here before numpy loads) so the figure is per core.
"""

from __future__ import annotations

import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from xlatent.physics.simulator import simulate  # noqa: E402


def main(n: int = 20000) -> float:
    """Simulate ``n`` spectra (after a small warm-up) and return spectra per second."""
    simulate(500, seed=1)  # builds and caches the response/grid matrices and xraylib tables
    t0 = time.perf_counter()
    simulate(n, seed=0)
    dt = time.perf_counter() - t0
    rate = n / dt
    print(f"simulate: {n} spectra in {dt:.2f} s -> {rate:,.0f} spectra/s (one core)")
    return rate


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
