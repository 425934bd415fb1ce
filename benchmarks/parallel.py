"""Speed-up of 2 workers over 1 for ingest (PHA files) and encoding (issue 17).

Ingest: ``--n-files`` copies of the real Chandra spectra (benchmarks/ingest.py's layout: a
directory per detection, responses shared through symlinks) streamed into one SpectrumSet
file by ``ingest_to_file``. Encode: a set of ``--n-spectra`` (simulated 10,000 at a time and
tiled with new spec_ids: encoding time does not depend on what the spectra are) encoded by
``encode_to_file`` with the pretrained model. Each is timed end to end with ``--workers 1``
(in this process, one torch thread) and ``--workers 2`` (one local worker process and this
one, its start-up included; the start-up alone is printed too), then on a 2-worker Dask
cluster already running (``scheduler=``), and the outputs are checked identical. (The figures
below are from the Dask LocalCluster that ``--workers 2`` used then; benchmarks/scale.py
measures the command lines.)

    python benchmarks/parallel.py [--n-files 5000] [--n-spectra 100000] [--error-draws 0]

2026-12-02, on this 2-core machine while 4 other sessions kept the load average at 6-11 (so
these are not the idle-CPU figures issue 17 asks for): cluster start-up 40 s; ingest of 5,000
files 55 s on 1 worker, 144 s on 2 (start-up included), 67 s on a running cluster; encoding
100,000 spectra 355 s on 1 worker, 294 s on 2, 185 s on a running cluster (1.92x). At load
~5, ingest of 2,000 files on a running 2-worker cluster: 1.25x and 1.53x over 1 worker.
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import build  # noqa: E402

from xlatent.core import SpectrumSet  # noqa: E402
from xlatent.core.parallel import ordered_map  # noqa: E402
from xlatent.io.ingest import ingest_to_file  # noqa: E402
from xlatent.model.catalog import read_latents  # noqa: E402
from xlatent.model.parallel_encode import encode_to_file  # noqa: E402


def _noop(x: int) -> int:
    return x


def startup_s(workers: int) -> float:
    """Seconds to start the local workers, run one trivial task and close them."""
    t0 = time.perf_counter()
    list(ordered_map(_noop, [(1,)], workers=workers))
    return time.perf_counter() - t0


@contextmanager
def _warm_cluster() -> Iterator[str]:
    """A running 2-worker Dask cluster (one thread a worker, xlatent and torch imported): its
    scheduler's address, for ``--scheduler``."""
    import logging

    from dask.distributed import Client, LocalCluster

    quiet = {"dashboard_address": ":0", "silence_logs": logging.ERROR}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, **quiet) as cluster, \
            Client(cluster) as client:  # fmt: skip
        for name in ("xlatent.io.ingest_chunks", "xlatent.model.parallel_encode", "torch"):
            client.run(importlib.import_module, name)
        yield cluster.scheduler_address


def tiled_set(n: int, path: Path) -> None:
    from xlatent.physics.simulator import simulate

    base = simulate(min(n, 10_000), seed=0)
    parts, k = [], 0
    while sum(len(p) for p in parts) < n:
        part = base[: n - sum(len(p) for p in parts)]
        part.meta["spec_id"] = [f"{s}_t{k}" for s in part.meta["spec_id"]]
        parts.append(part)
        k += 1
    SpectrumSet.concat(parts).write(path)


def timed(fn, *args, **kwargs) -> tuple[float, object]:  # noqa: ANN001
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-files", type=int, default=5000)
    ap.add_argument("--n-spectra", type=int, default=100_000)
    ap.add_argument("--error-draws", type=int, default=0, help="latent-error redraws (encode)")
    default_shared = Path(__file__).resolve().parents[1].parent / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("XLATENT_SHARED", default_shared))
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    print(f"cores: {os.cpu_count()}; load average now: {os.getloadavg()[0]:.1f}")
    print(f"2 local workers: start + one task + close: {startup_s(2):.1f} s")
    with tempfile.TemporaryDirectory() as tmp, _warm_cluster() as addr:
        root = Path(tmp)
        if args.n_files:
            (root / "pha").mkdir()
            build(args.shared / "data" / "real_spectra", root / "pha", args.n_files)
            t1, r1 = timed(ingest_to_file, root / "pha", root / "i1.h5", workers=1, progress=False)
            t2, r2 = timed(ingest_to_file, root / "pha", root / "i2.h5", workers=2, progress=False)
            tw, _ = timed(ingest_to_file, root / "pha", root / "iw.h5", scheduler=addr,
                          progress=False)  # fmt: skip
            a, b = (SpectrumSet.read_hdf5(root / f"i{w}.h5") for w in (1, 2))
            same = all(np.array_equal(getattr(a, k), getattr(b, k)) for k in
                       ("counts", "background", "exposure_s", "effective_area_cm2"))  # fmt: skip
            same = same and a.meta.equals(b.meta) and r1.skipped == r2.skipped
            n = r1.n_ingested
            print(f"ingest {n} PHA files: 1 worker {t1:.1f} s ({n / t1:.0f}/s), "
                  f"2 workers {t2:.1f} s ({n / t2:.0f}/s): speed-up {t1 / t2:.2f}x; "
                  f"identical: {same}")  # fmt: skip
            print(f"  on 2 workers already started: {tw:.1f} s, speed-up {t1 / tw:.2f}x")
        if args.n_spectra:
            tiled_set(args.n_spectra, root / "set.h5")
            opts = {"n_draws": args.error_draws, "progress": False}
            t1, _ = timed(encode_to_file, root / "set.h5", root / "l1.parquet", workers=1, **opts)
            t2, _ = timed(encode_to_file, root / "set.h5", root / "l2.parquet", workers=2, **opts)
            tw, _ = timed(encode_to_file, root / "set.h5", root / "lw.parquet", scheduler=addr,
                          **opts)  # fmt: skip
            same = read_latents(root / "l1.parquet").equals(read_latents(root / "l2.parquet"))
            n = args.n_spectra
            print(f"encode {n} spectra ({args.error_draws} error draws): 1 worker {t1:.1f} s "
                  f"({n / t1:.0f}/s), 2 workers {t2:.1f} s ({n / t2:.0f}/s): speed-up "
                  f"{t1 / t2:.2f}x; identical: {same}")  # fmt: skip
            print(f"  on 2 workers already started: {tw:.1f} s, speed-up {t1 / tw:.2f}x")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {rss:.0f} MB (workers not included)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (others' work skews these)")


if __name__ == "__main__":
    main()
