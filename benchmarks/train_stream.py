"""Training from memory, streamed from the set file, and with 2 DDP processes (issue 17).

    PYTHONPATH=src python benchmarks/train_stream.py [--n 50000] [--epochs 1] [--threads 1]
        [--modes memory,stream,ddp2] [--work DIR]

Simulates ``--n`` spectra (``xlatent.physics.simulator.simulate``, seed 0) into a set file once
(kept in ``--work``, default the system temp dir), then trains the default autoencoder for
``--epochs`` on all of them in a fresh process per mode, so that each peak resident memory is
its own:

- ``memory``: ``SpectrumSet.read`` then ``fit`` (the whole set and its tensors in memory);
- ``stream``: ``SpectrumSet.open`` (lazy view) then ``fit`` (blocks read and prepared as needed);
- ``ddp2``: the same under ``torchrun --nproc_per_node 2`` with ``distributed=True`` (gloo).

Prints per mode: seconds per epoch, microseconds per spectrum and epoch, the whole fit's seconds
(calibration included), peak RSS (the largest rank's) and the final validation deviance per bin.
Figures are printed, not asserted; on a shared CPU they are noisy.

Measured 2026-12-02 with ``SpectrumSet.open`` from the ``ooc`` branch, 50,000 spectra, 1 epoch,
1 thread, on the 2-core CPU shared with 4 other jobs (load average 7-10, so the times are
upper bounds and not comparable between modes): memory 179 s/epoch, peak RSS 1,679 MB;
stream 155 s/epoch, 1,120 MB; ddp2 58 s/epoch, 930 MB per rank. Imports alone are 385 MB and
opening the 50k view 180 MB more.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def child(mode: str, set_path: Path, epochs: int, threads: int) -> None:
    """One training run; prints one JSON line (each rank, under torchrun)."""
    import torch

    from xlatent.core import SpectrumSet
    from xlatent.model import SpectralAutoencoder

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    src = SpectrumSet.read(set_path) if mode == "memory" else SpectrumSet.open(set_path)
    t_read = time.perf_counter() - t0
    model = SpectralAutoencoder(epochs=epochs, device="cpu", progress=False, num_threads=threads)
    model.fit(src, streaming=mode != "memory", distributed=mode == "ddp2")
    fit_s = time.perf_counter() - t0 - t_read
    hist = model.history_
    print(json.dumps({
        "mode": mode, "rank": int(os.environ.get("RANK", "0")), "n": len(src),
        "epoch_s": hist[-1]["elapsed_s"] / len(hist), "fit_s": fit_s, "read_s": t_read,
        "val": hist[-1]["val_deviance_per_bin"],
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default="memory,stream,ddp2")
    ap.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "xlatent_train_stream"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--set", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.set, args.epochs, args.threads)

    args.work.mkdir(parents=True, exist_ok=True)
    set_path = args.work / f"sim_{args.n}.h5"
    if not set_path.exists():
        from xlatent.physics.simulator import simulate

        t0 = time.perf_counter()
        simulate(args.n, seed=0).write(set_path)
        print(f"simulated {args.n} spectra in {time.perf_counter() - t0:.0f} s -> {set_path}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for mode in args.modes.split(","):
        launch = [sys.executable]
        if mode == "ddp2":
            launch += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        cmd = [*launch, str(HERE), "--child", mode, "--set", str(set_path),
               "--epochs", str(args.epochs), "--threads", str(args.threads)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
        recs = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
        rec = next(r for r in recs if r["rank"] == 0)
        rec["rss_mb"] = max(r["rss_mb"] for r in recs)
        rows.append(rec)
    head = ("mode", "n", "s/epoch", "us/spec", "fit s", "RSS MB", "val/bin")
    print(f"{head[0]:8} " + " ".join(f"{h:>8}" for h in head[1:]))
    for r in rows:
        print(
            f"{r['mode']:8} {r['n']:8d} {r['epoch_s']:8.1f} {1e6 * r['epoch_s'] / r['n']:8.0f} "
            f"{r['fit_s']:8.1f} {r['rss_mb']:8.0f} {r['val']:8.4f}"
        )


if __name__ == "__main__":
    main()
