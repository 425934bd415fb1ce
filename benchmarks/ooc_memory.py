"""Peak memory of out-of-core SpectrumSets: ``python benchmarks/ooc_memory.py`` (by hand; not
a test).

Each case runs in a fresh process and prints its peak resident memory (``ru_maxrss``):

* ``write N``: N synthetic spectra (128 bins, with truth) written by a SpectrumSetWriter in
  blocks of 20,000, then read back with ``SpectrumSet.open(path).iter_batches(8192)``;
* ``read N``: the same file read whole (``SpectrumSet.read_hdf5``), for comparison;
* ``simulate N``: ``xlatent simulate --n N`` (simulated and written in blocks of 20,000).

``python benchmarks/ooc_memory.py [N_SMALL N_LARGE] [--simulate]`` (default 20000 200000;
``--simulate`` adds the simulator cases, which take minutes at 200k).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

BLOCK = 20_000


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _synthetic_block(start: int, size: int):  # noqa: ANN202 - SpectrumSet, imported late
    import numpy as np
    import pandas as pd

    from xlatent.core import EnergyGrid, SpectrumSet

    rng = np.random.default_rng(start)
    g = EnergyGrid.default()
    m = g.n_bins
    return SpectrumSet(
        grid=g,
        counts=rng.poisson(2.0, (size, m)) * 0.75,
        background=rng.random((size, m)) * 0.1,
        exposure_s=rng.uniform(1e3, 1e5, size),
        effective_area_cm2=rng.uniform(10, 600, (size, m)),
        meta=pd.DataFrame(
            {
                "spec_id": [f"s{start + i}" for i in range(size)],
                "source_class": rng.choice(["AGN", "YSO"], size),
            }
        ),  # fmt: skip
        expected_counts=rng.uniform(0, 3, (size, m)),
    ).update_band_columns()


def case(kind: str, n: int, path: str) -> None:
    """One measurement, in this process."""
    from xlatent.core import EnergyGrid, SpectrumSet, SpectrumSetWriter

    t0 = time.perf_counter()
    if kind == "write":
        with SpectrumSetWriter(path, EnergyGrid.default()) as w:
            for a in range(0, n, BLOCK):
                w.append(_synthetic_block(a, min(BLOCK, n - a)))
        after_write = _peak_mib()
        total = 0.0
        with SpectrumSet.open(path) as view:
            for b in view.iter_batches(8192):
                total += float(b.counts.sum())
        size = os.path.getsize(path)
        print(f"write+stream {n:>7d}: peak RSS {_peak_mib():7.0f} MiB (after writing "
              f"{after_write:.0f}); file {size / n:.0f} B/spectrum; "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    elif kind == "read":
        s = SpectrumSet.read_hdf5(path)
        print(f"read_hdf5    {len(s):>7d}: peak RSS {_peak_mib():7.0f} MiB; "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    elif kind == "simulate":
        from typer.testing import CliRunner

        from xlatent.cli import app

        r = CliRunner().invoke(app, ["simulate", "--n", str(n), "--out", path])
        assert r.exit_code == 0, r.output
        size = os.path.getsize(path)
        print(f"simulate     {n:>7d}: peak RSS {_peak_mib():7.0f} MiB; file {size / n:.0f} "
              f"B/spectrum; {time.perf_counter() - t0:.1f} s")  # fmt: skip


def main(sizes: list[int], simulate: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"set{n}.h5")
            kinds = ["write", "read", *(["simulate"] if simulate else [])]
            for kind in kinds:
                out = path if kind != "simulate" else os.path.join(tmp, f"sim{n}.h5")
                subprocess.run([sys.executable, __file__, "--case", kind, str(n), out], check=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--case"]:
        case(args[1], int(args[2]), args[3])
    else:
        sim = "--simulate" in args
        nums = [int(a) for a in args if a.isdigit()] or [20_000, 200_000]
        main(nums, sim)
