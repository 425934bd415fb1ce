"""Simulator throughput on one core: ``python benchmarks/simulate.py [n]`` prints spectra/s.

Two figures: the default response-diverse sky (every spectrum its own member of the ACIS
response family: chip type, date, off-axis angle) and every spectrum through one fixed
response (the built-in ACIS-S). Target: >= 2,000 spectra/s for the default (128-bin grid).
Run with ``OMP_NUM_THREADS=1`` (set here before numpy loads) so the figure is per core. Each
figure is given twice: per second of wall time and per second of this process's CPU time
(the honest per-core figure when other jobs share the machine).
"""

from __future__ import annotations

import os
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from xlatent.instrument import default_response  # noqa: E402
from xlatent.physics.simulator import simulate  # noqa: E402


def _rate(n: int, label: str, **kwargs: object) -> float:
    simulate(500, seed=1, **kwargs)  # builds and caches the response/grid matrices and tables
    t0, c0 = time.perf_counter(), time.process_time()
    simulate(n, seed=0, **kwargs)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = n / dt
    print(f"simulate ({label}): {n} spectra in {dt:.2f} s -> {rate:,.0f} spectra/s (one core); "
          f"{cpu:.2f} s CPU -> {n / cpu:,.0f} spectra per CPU second")  # fmt: skip
    return rate


def main(n: int = 20000) -> dict[str, float]:
    """Simulate ``n`` spectra each way (after a small warm-up); spectra per second."""
    return {
        "family": _rate(n, "default sky, a response per spectrum"),
        "fixed": _rate(n, "one fixed response, built-in ACIS-S", response=default_response()),
    }


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
