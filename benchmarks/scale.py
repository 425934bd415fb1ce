"""Scaling of simulate, ingest, one training epoch and encode from 50k to 400k spectra (issue 17).

Every stage runs the command line in a subprocess (``python -m xlatent.cli ...``), so this
measures whatever the installed xlatent does (in-memory today; views, Dask workers and
streaming training once they land). For each size N:

- simulate: ``xlatent simulate --n N --seed S`` (or, with --derive-prefixes, the largest set
  once and the others as its first N rows, written through the Python API);
- ingest: ``xlatent ingest BLOCK... --out F --workers W`` over N PHA files (+ shared ARF/RMF),
  written once into WORKDIR/pha by benchmarks/scale_pha.py in blocks of --block spectra (the
  set of size N is the first N/block folders) and reused by later runs when kept (--keep);
- train: ``xlatent train SET --epochs 1`` (with ``--stream`` where train has it), and with
  --train-procs P > 1 the same under ``torchrun --nproc_per_node P ... --distributed`` where
  train has that option; the epoch's seconds are the ``elapsed_s`` that the model's history
  records (wall time, which adds start-up, calibration and the final deviance, is reported
  too), and the epoch's validation deviance of 1 and P ranks is printed side by side;
- encode: ``xlatent encode SET --model DIR --out L.parquet --workers W``.

Peak memory is the largest sum of resident memory over the command's whole process tree
(driver and every worker or rank it starts), sampled every 0.2 s. --workers applies to ingest
and encode when the command has the option (``--help`` is asked); otherwise those run once, as
they are, and the speed-up check says SKIP. The table's ``workers`` column is the number of
DDP ranks for train. Subprocesses get OMP/BLAS threads = 1 (a worker is one core) except train
(--train-threads, shared among its ranks). Outputs of 1 and 2 workers are compared. Options
that start with ``--`` are passed through as ``--train-args=--max-time=600``.

    python benchmarks/scale.py --sizes 50000,100000,200000,400000 --workdir /scratch/xl \\
        [--stages simulate,ingest,train,encode] [--workers 1,2] [--keep] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_check  # noqa: E402
from scale_check import Run, run_monitored  # noqa: E402

STAGES = ("simulate", "ingest", "train", "encode")
#: Bytes per spectrum on disk, for the up-front estimate (measured with 5k-20k spectra, float64
#: HDF5 layout of 2026-12-02, rounded up; the run prints the measured figures at its end).
EST_BYTES = {"sim": 4000, "ingest": 1900, "pha": 7200, "pha_plain": 35000, "latents": 600}


def cli(*args: Any) -> list[str]:
    return [sys.executable, "-m", "xlatent.cli", *map(str, args)]


def env_for(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, TQDM_MININTERVAL="5")
    src = Path(__file__).resolve().parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH")) if p)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if threads is None:
            env.pop(var, None)
        else:
            env[var] = str(threads)
    return env


def has_option(command: str, option: str) -> bool:
    """Whether ``xlatent COMMAND --help`` lists ``option`` (--workers once the Dask work is
    merged, --stream and --distributed once the DDP work is)."""
    r = run_monitored(cli(command, "--help"), dict(env_for(1), COLUMNS="200"), None)
    return option in r.output


def disk_plan(args: argparse.Namespace, sizes: list[int]) -> int:
    """Print the disk this run needs and what is free; returns the bytes needed."""
    total_n, big = sum(sizes), max(sizes)
    n_w = len(args.workers)
    need = 0
    if "simulate" in args.stages or {"train", "encode"} & set(args.stages):
        need += EST_BYTES["sim"] * total_n
    if "ingest" in args.stages:
        need += EST_BYTES["ingest"] * total_n * n_w
        need += EST_BYTES["pha_plain" if args.pha_plain else "pha"] * big
    if "encode" in args.stages:
        need += EST_BYTES["latents"] * total_n * n_w
    args.workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(args.workdir).free
    print(f"disk: this run needs ~{need / 1e9:.1f} GB in {args.workdir} "
          f"({free / 1e9:.1f} GB free)")  # fmt: skip
    if need > 0.9 * free:
        raise SystemExit(f"error: {args.workdir}: not enough free disk (~{need / 1e9:.1f} GB "
                         f"needed, {free / 1e9:.1f} GB free)")  # fmt: skip
    return need


def ensure_pha(args: argparse.Namespace, n: int) -> tuple[list[Path], float]:
    """The PHA folders holding the first ``n`` spectra, written where missing (in parallel,
    one process per core); returns them and the seconds spent writing."""
    from scale_pha import write_block

    root = args.workdir / ("pha_plain" if args.pha_plain else "pha")
    root.mkdir(parents=True, exist_ok=True)
    if n % args.block:
        raise SystemExit(f"error: size {n} is not a multiple of --block {args.block}")
    dirs = [root / f"seed{args.seed}_n{args.block}_blk{i:04d}" for i in range(n // args.block)]
    todo = [(i, d) for i, d in enumerate(dirs) if not d.is_dir()]
    t0 = time.perf_counter()
    if todo:
        print(f"writing {len(todo) * args.block} spectra as PHA files into {root} ...", flush=True)
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            jobs = [pool.submit(write_block, d, args.block, args.seed * 100_003 + i,
                                not args.pha_plain) for i, d in todo]  # fmt: skip
            for job in jobs:
                job.result()
    return dirs, time.perf_counter() - t0


def stage_simulate(args: argparse.Namespace, n: int, big: int) -> Run:
    out = args.workdir / "sets" / f"sim_{n}.h5"
    if args.derive_prefixes and n != big:
        code = (
            "import sys; from xlatent.core import SpectrumSet as S; "
            "s = S.read_hdf5(sys.argv[1]); s[: int(sys.argv[3])].write(sys.argv[2])"
        )
        src = args.workdir / "sets" / f"sim_{big}.h5"
        return run_monitored([sys.executable, "-c", code, src, out, n], env_for(1), out)
    return run_monitored(cli("simulate", "--n", n, "--seed", args.seed, "--out", out,
                             *args.simulate_args.split()), env_for(1), out)  # fmt: skip


def stage_ingest(args: argparse.Namespace, n: int, w: int | None, dirs: list[Path]) -> Run:
    out = args.workdir / "sets" / f"ingest_{n}_w{w or 0}.h5"
    flag = ["--workers", w] if w else []
    cmd = cli("ingest", *dirs, "--out", out, *flag, *args.ingest_args.split())
    return run_monitored(cmd, env_for(1), out)


def stage_train(args: argparse.Namespace, n: int, procs: int, extra: list[str]) -> Run:
    """One epoch; ``procs`` > 1: that many DDP ranks under torchrun (``--distributed``)."""
    out = args.workdir / "models" / (f"model_{n}" if procs == 1 else f"model_{n}_p{procs}")
    shutil.rmtree(out, ignore_errors=True)
    opts = ["--out", out, "--epochs", 1, "--seed", args.seed, "--device", args.device, *extra]
    cmd = cli("train", args.workdir / "sets" / f"sim_{n}.h5", *opts, *args.train_args.split())
    if procs > 1:  # python -m torch.distributed.run is torchrun without relying on PATH
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={procs}"]  # fmt: skip
        cmd = [*run, *cmd[1:], "--distributed"]
    threads = max(1, args.train_threads // procs)
    r = run_monitored(cmd, env_for(threads), out)
    r.epoch_s = scale_check.first_epoch(out / "model.json", "elapsed_s")
    r.extra["val_deviance_per_bin"] = scale_check.first_epoch(
        out / "model.json", "val_deviance_per_bin"
    )
    return r


def stage_encode(args: argparse.Namespace, n: int, w: int | None) -> Run:
    out = args.workdir / "latents" / f"latents_{n}_w{w or 0}.parquet"
    model = args.workdir / "models" / f"model_{n}"
    use = ["--model", model] if (model / "model.json").exists() else []
    flag = ["--workers", w] if w else []
    cmd = cli("encode", args.workdir / "sets" / f"sim_{n}.h5", "--out", out, *use,
              "--error-draws", args.error_draws, *flag, *args.encode_args.split())  # fmt: skip
    return run_monitored(cmd, env_for(1), out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    ap.add_argument("--sizes", type=ints, default=[50_000, 100_000, 200_000, 400_000])
    ap.add_argument("--workdir", type=Path, default=Path("scale_work"))
    ap.add_argument("--stages", type=lambda s: s.split(","), default=list(STAGES))
    ap.add_argument("--workers", type=ints, default=[1, 2], help="for ingest and encode")
    ap.add_argument("--keep", action="store_true", help="keep WORKDIR (PHA cache included)")
    ap.add_argument("--json", type=Path, help="write the table and checks here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--block", type=int, default=0, help="PHA spectra per folder "
                    "(default: gcd of the sizes, at most 10000)")  # fmt: skip
    ap.add_argument("--pha-plain", action="store_true", help="uncompressed .pha (5x the disk)")
    ap.add_argument(
        "--derive-prefixes",
        action="store_true",
        help="simulate the largest size only; smaller sets are its first rows",
    )
    ap.add_argument("--error-draws", type=int, default=16, help="encode --error-draws")
    ap.add_argument("--device", default="cpu", help="train --device")
    ap.add_argument("--train-threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads of train, shared among its ranks")  # fmt: skip
    ap.add_argument(
        "--train-procs",
        type=ints,
        default=[1, 2],
        help="DDP ranks of train (torchrun; > 1 only where train has --distributed)",
    )
    for stage in STAGES:
        ap.add_argument(f"--{stage}-args", default="", help=f"more options for {stage}")
    args = ap.parse_args(argv)
    unknown = set(args.stages) - set(STAGES)
    if unknown or not args.sizes or min(args.sizes) < 1:
        ap.error(f"--stages from {','.join(STAGES)}; --sizes positive integers")
    args.sizes = sorted(set(args.sizes))
    if not args.block:
        args.block = min(math.gcd(*args.sizes), 10_000)
        while args.block > 10_000 or math.gcd(*args.sizes) % args.block:
            args.block -= 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    made_workdir = not args.workdir.exists()
    disk_plan(args, args.sizes)
    for sub in ("sets", "models", "latents"):
        (args.workdir / sub).mkdir(parents=True, exist_ok=True)
    workers = {
        s: (args.workers if has_option(s, "--workers") else [None]) for s in ("ingest", "encode")
    }
    for s, ws in workers.items():
        if ws == [None] and s in args.stages:
            print(f"note: `xlatent {s}` has no --workers here; it runs once as it is")
    procs = args.train_procs if has_option("train", "--distributed") else [1]
    train_extra = ["--stream"] if has_option("train", "--stream") else []
    if "train" in args.stages:
        print(f"train: ranks {procs}{' (no --distributed here)' if procs == [1] else ''}, "
              f"{'streaming (--stream)' if train_extra else 'in memory'}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    big = max(args.sizes)
    t_start = time.perf_counter()
    order = sorted(args.sizes, reverse=True) if args.derive_prefixes else args.sizes
    try:
        for n in order:
            if "simulate" in args.stages or not (args.workdir / "sets" / f"sim_{n}.h5").exists():
                if {"simulate", "train", "encode"} & set(args.stages):
                    label = "subset" if args.derive_prefixes and n != big else "simulate"
                    rows.append(scale_check.row(label, n, 1, stage_simulate(args, n, big)))
        for n in args.sizes:
            if "ingest" in args.stages:
                dirs, t_pha = ensure_pha(args, n)
                if t_pha:
                    print(f"PHA files written in {t_pha:.0f} s (preparation, not timed as ingest)")
                for w in workers["ingest"]:
                    rows.append(scale_check.row("ingest", n, w, stage_ingest(args, n, w, dirs)))
            if "train" in args.stages:
                for p in sorted(procs):
                    r = stage_train(args, n, p, train_extra)
                    rows.append(scale_check.row("train", n, p, r))
            if "encode" in args.stages:
                for w in workers["encode"]:
                    rows.append(scale_check.row("encode", n, w, stage_encode(args, n, w)))
        same = scale_check.compare_worker_outputs(args.workdir, args.sizes, workers)
        scale_check.add_ratios(rows)
        print(scale_check.format_table(rows))
        checks = scale_check.checks(rows, same, args.sizes)
        for line in checks:
            print(line)
        sizes_on_disk = scale_check.bytes_per_spectrum(args.workdir)
        for what, b in sizes_on_disk.items():
            print(f"disk: {what} {b:,.0f} bytes per spectrum")
        print(f"total {time.perf_counter() - t_start:.0f} s")
        if args.json:
            args.json.write_text(json.dumps({
                "sizes": args.sizes, "stages": args.stages, "workers": args.workers,
                "rows": rows, "checks": checks, "bytes_per_spectrum": sizes_on_disk,
                "identical_outputs": same, "cpu_count": os.cpu_count(),
            }, indent=1))  # fmt: skip
            print(f"wrote {args.json}")
        return 1 if any(r["rc"] for r in rows) else 0
    finally:
        if not args.keep:
            targets = [args.workdir] if made_workdir else [
                args.workdir / d for d in ("sets", "models", "latents", "pha", "pha_plain")
            ]  # fmt: skip
            for t in targets:
                shutil.rmtree(t, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
