"""The measuring and checking half of benchmarks/scale.py: run a command while sampling the
resident memory of its process tree, the result table, and issue 17's done-when checks."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

SAMPLE_S = 0.2
#: Issue 17's targets.
MAX_GROWTH, MAX_PEAK_MB, MIN_SPEEDUP = 1.2, 3000.0, 1.7


@dataclass
class Run:
    """One command: exit status, wall seconds, peak RSS of its process tree, its output."""

    cmd: list[str]
    rc: int
    wall_s: float
    peak_rss_mb: float
    output: str
    epoch_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and all its descendants (those that vanish count 0)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_monitored(cmd: list[Any], env: dict[str, str], out: Path | None) -> Run:
    """Run ``cmd`` (output to ``<out>.log`` when given), sampling its tree's RSS every 0.2 s."""
    cmd = [str(c) for c in cmd]
    log = None if out is None else out.with_name(out.name + ".log")
    if log is not None:
        print("$ " + " ".join(cmd[2:] if cmd[1:2] == ["-m"] else cmd), flush=True)
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as p:  # fmt: skip
        proc, peak, done = psutil.Process(p.pid), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss(proc))
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output = p.communicate()[0]
        done.set()
        sampler.join()
    wall = time.perf_counter() - t0
    if log is not None:
        log.write_text(output)
        if p.returncode:
            tail = "\n".join(output.strip().splitlines()[-5:])
            print(f"  exit {p.returncode} (log {log}):\n{tail}", flush=True)
    return Run(cmd, p.returncode, wall, peak[0] / 1e6, output)


def first_epoch(model_json: Path, key: str) -> float | None:
    """``key`` of the first epoch's record in the model's training history (None: absent)."""
    try:
        history = json.loads(model_json.read_text())["training"]["history"]
        return float(history[0][key])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def row(stage: str, n: int, workers: int | None, r: Run) -> dict[str, Any]:
    """A table row; train's seconds are the epoch's own (wall time alongside)."""
    seconds = r.epoch_s if r.epoch_s is not None else r.wall_s
    out = {
        "stage": stage, "n": n, "workers": workers, "seconds": seconds,
        "us_per_spectrum": seconds / n * 1e6, "wall_s": r.wall_s,
        "wall_us_per_spectrum": r.wall_s / n * 1e6, "peak_rss_mb": r.peak_rss_mb, "rc": r.rc,
        **r.extra,
    }  # fmt: skip
    print(f"  {stage} n={n} workers={workers or '-'}: {seconds:.1f} s "
          f"({out['us_per_spectrum']:.0f} us/spectrum), wall {r.wall_s:.1f} s, "
          f"peak {r.peak_rss_mb:.0f} MB", flush=True)  # fmt: skip
    return out


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``ratio``: us/spectrum over that of the smallest size of the same stage and workers."""
    for r in rows:
        same = [q for q in rows if (q["stage"], q["workers"]) == (r["stage"], r["workers"])]
        base = min(same, key=lambda q: q["n"])
        r["ratio"] = r["us_per_spectrum"] / base["us_per_spectrum"]


def format_table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'stage':<9}{'N':>9}{'workers':>8}{'seconds':>10}{'us/spec':>9}{'wall s':>9}"
            f"{'wall us/spec':>13}{'peak RSS MB':>12}{'ratio':>7}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['stage']:<9}{r['n']:>9}{r['workers'] or '-':>8}{r['seconds']:>10.1f}"
            f"{r['us_per_spectrum']:>9.0f}{r['wall_s']:>9.1f}{r['wall_us_per_spectrum']:>13.0f}"
            f"{r['peak_rss_mb']:>12.0f}{r['ratio']:>7.2f}" + ("  FAILED" if r["rc"] else "")
        )
    return "\n".join(lines)


def checks(rows: list[dict[str, Any]], same: dict[str, bool | None], sizes: list[int]) -> list[str]:
    """PASS/FAIL/SKIP lines for issue 17's done-when targets on this run's rows."""
    lo, hi = min(sizes), max(sizes)
    out = []
    if lo == hi:
        out.append("SKIP growth: one size only")
    for stage in ("ingest", "train", "encode"):
        at = {(r["n"], r["workers"]): r for r in rows if r["stage"] == stage}
        w1 = 1 if (hi, 1) in at else None
        if lo != hi and (lo, w1) in at and (hi, w1) in at:
            g = at[hi, w1]["ratio"]
            out.append(f"{'PASS' if g <= MAX_GROWTH else 'FAIL'} {stage}: us/spectrum grows "
                       f"{g:.2f}x from {lo} to {hi} (target <= {MAX_GROWTH}x)")  # fmt: skip
        if stage != "train":
            if (hi, 1) in at and (hi, 2) in at:
                s = at[hi, 1]["seconds"] / at[hi, 2]["seconds"]
                verdict = "PASS" if s >= MIN_SPEEDUP else "FAIL"
                out.append(f"{verdict} {stage}: 2 workers {s:.2f}x faster than 1 at {hi} "
                           f"(target >= {MIN_SPEEDUP}x)")  # fmt: skip
            else:
                out.append(f"SKIP {stage}: speed-up (1 and 2 workers not both run)")
            if same.get(stage) is not None:
                out.append(f"{'PASS' if same[stage] else 'FAIL'} {stage}: 1 and 2 workers "
                           "give identical outputs")  # fmt: skip
    for n in sizes:
        dev = {r["workers"]: r.get("val_deviance_per_bin") for r in rows
               if r["stage"] == "train" and r["n"] == n}  # fmt: skip
        if len(dev) > 1 and all(v is not None for v in dev.values()):
            listed = ", ".join(f"{p} rank(s) {v:.4f}" for p, v in sorted(dev.items()))
            out.append(f"INFO train at {n}: validation deviance per bin after 1 epoch: {listed}")
    top = [r for r in rows if r["n"] == hi]
    if top:
        worst = max(top, key=lambda r: r["peak_rss_mb"])
        ok = worst["peak_rss_mb"] <= MAX_PEAK_MB
        out.append(f"{'PASS' if ok else 'FAIL'} memory: peak {worst['peak_rss_mb']:.0f} MB "
                   f"({worst['stage']}, workers {worst['workers'] or '-'}) at {hi} "
                   f"(target <= {MAX_PEAK_MB:.0f} MB)")  # fmt: skip
    if any(r["rc"] for r in rows):
        out.append("FAIL some commands exited non-zero (see the logs in WORKDIR)")
    return out


def same_hdf5(a: Path, b: Path, rows: int = 65536) -> bool:
    """Every dataset of two HDF5 files equal (attributes, such as provenance, not compared),
    read in row blocks so memory stays small."""
    import h5py
    import numpy as np

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a: list[str] = []
        names_b: list[str] = []
        fa.visit(lambda k: names_a.append(k) if isinstance(fa[k], h5py.Dataset) else None)
        fb.visit(lambda k: names_b.append(k) if isinstance(fb[k], h5py.Dataset) else None)
        if sorted(names_a) != sorted(names_b):
            return False
        for k in names_a:
            da, db = fa[k], fb[k]
            if da.shape != db.shape or da.dtype != db.dtype:
                return False
            n = da.shape[0] if da.shape else 1
            for i in range(0, n, rows):
                sl = slice(i, i + rows) if da.shape else ()
                if not np.array_equal(da[sl], db[sl], equal_nan=da.dtype.kind == "f"):
                    return False
    return True


def same_parquet(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    return pq.read_table(a).equals(pq.read_table(b))


def compare_worker_outputs(
    workdir: Path, sizes: list[int], workers: dict[str, list[int | None]]
) -> dict[str, bool | None]:
    """Whether 1 and 2 workers wrote identical outputs at every size both ran (None: not run)."""
    found: dict[str, bool | None] = {}
    for stage, sub, ext, same in (("ingest", "sets", "h5", same_hdf5),
                                  ("encode", "latents", "parquet", same_parquet)):  # fmt: skip
        if not {1, 2} <= set(workers[stage]):
            found[stage] = None
            continue
        results = []
        for n in sizes:
            a, b = (workdir / sub / f"{stage.replace('encode', 'latents')}_{n}_w{w}.{ext}"
                    for w in (1, 2))  # fmt: skip
            if a.exists() and b.exists():
                results.append(same(a, b))
        found[stage] = all(results) if results else None
    return found


def bytes_per_spectrum(workdir: Path) -> dict[str, float]:
    """Measured file sizes per spectrum of the largest outputs of each kind."""
    out: dict[str, float] = {}
    for what, pattern in (("simulated set", "sets/sim_*.h5"), ("ingested set", "sets/ingest_*.h5"),
                          ("latents", "latents/latents_*.parquet")):  # fmt: skip
        files = sorted(workdir.glob(pattern), key=lambda f: int(f.stem.split("_")[1]))
        if files:
            out[what] = files[-1].stat().st_size / int(files[-1].stem.split("_")[1])
    for kind in ("pha", "pha_plain"):
        blocks = [d for d in (workdir / kind).glob("seed*_blk*") if d.is_dir()]
        if blocks:
            n = int(blocks[0].name.split("_n")[1].split("_")[0]) * len(blocks)
            size = sum(f.stat().st_size for d in blocks for f in d.iterdir())
            out[f"PHA files ({kind})"] = size / n
    return out
