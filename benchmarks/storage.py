"""SpectrumSet storage: ``python benchmarks/storage.py [n]`` prints bytes per spectrum and
read speeds for each filter choice of the (n, m) datasets.

Simulates ``n`` spectra (default 20,000; the default sky) once, then writes them with: the
layout before issue 17 (float64, gzip level 4 + shuffle), and the current dtypes (float32
where lossless, area and truth float32) with gzip 4, gzip 1, lzf and no compression (all
with shuffle and Fletcher-32). For each: file size per spectrum, the whole read
(``SpectrumSet.read_hdf5``: seal + every row) and a streamed pass
(``SpectrumSet.open(path).iter_batches(8192)``), in ms per 1,000 spectra. Timings are of
one process on a shared machine: noisy, compare them within one run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import xlatent.core.hdf5_write as hw  # noqa: E402
from xlatent.core import SpectrumSet  # noqa: E402
from xlatent.physics.simulator import simulate  # noqa: E402

SHUFFLE = {"shuffle": True, "fletcher32": True}
CHOICES = {
    "gzip4 (before, float64)": {"compression": "gzip", "compression_opts": 4, **SHUFFLE},
    "gzip4": {"compression": "gzip", "compression_opts": 4, **SHUFFLE},
    "gzip1": {"compression": "gzip", "compression_opts": 1, **SHUFFLE},
    "lzf": {"compression": "lzf", **SHUFFLE},
    "none": {"fletcher32": True},
}


def _best(fn: object, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def _stream(path: Path) -> None:
    with SpectrumSet.open(path) as view:
        for _ in view.iter_batches(8192):
            pass


def main(n: int = 20000) -> dict[str, dict[str, float]]:
    s = simulate(n, seed=0)
    out: dict[str, dict[str, float]] = {}
    saved = (dict(hw.FILTERS), hw._ALWAYS_F32, hw._EXACT_F32)
    with tempfile.TemporaryDirectory() as tmp:
        for label, filters in CHOICES.items():
            hw.FILTERS.clear()
            hw.FILTERS.update(filters)
            old = label.endswith("(before, float64)")
            hw._ALWAYS_F32, hw._EXACT_F32 = ((), ()) if old else saved[1:]
            path = Path(tmp) / f"{label.split()[0]}.h5"
            t_write = _best(lambda p=path: s.write(p), 1)
            size = path.stat().st_size
            t_read = _best(lambda p=path: SpectrumSet.read_hdf5(p))
            t_stream = _best(lambda p=path: _stream(p))
            per_1k = 1e6 / n  # seconds for n spectra -> ms per 1,000
            out[label] = {"bytes_per_spectrum": size / n, "write_ms_per_1k": t_write * per_1k,
                          "read_ms_per_1k": t_read * per_1k,
                          "stream_ms_per_1k": t_stream * per_1k}  # fmt: skip
            r = out[label]
            print(f"{label:26s} {r['bytes_per_spectrum']:7.0f} B/spectrum  write "
                  f"{r['write_ms_per_1k']:6.1f}  read {r['read_ms_per_1k']:6.1f}  stream "
                  f"{r['stream_ms_per_1k']:6.1f} ms per 1,000 spectra")  # fmt: skip
    hw.FILTERS.clear()
    hw.FILTERS.update(saved[0])
    hw._ALWAYS_F32, hw._EXACT_F32 = saved[1:]
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
