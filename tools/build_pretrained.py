"""Rebuild the pretrained model that ships in the package (``make pretrained``).

    PYTHONPATH=src python tools/build_pretrained.py [--recipe default] [--work DIR]

Runs ``xlatent train --recipe default --out WORK`` (the documented command, in a fresh
process, so whatever ``train`` writes into a model directory is there), then copies EVERY file
of the model directory into ``src/xlatent/model/data/pretrained/`` (replacing what was there),
except ``train_state.pt`` (resume state, never needed to encode) and ``training_ids.txt`` when
it is larger than ``--max-ids-bytes`` (a model without it loads and encodes; evaluate then
cannot leave its training spectra out). Finally loads the shipped copy and encodes with it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "src" / "xlatent" / "model" / "data" / "pretrained"
SKIP = {"train_state.pt"}
IDS = "training_ids.txt"


def build(recipe: str, work: Path, target: Path, max_ids_bytes: int) -> list[Path]:
    """Train by ``recipe`` into ``work`` and copy the model directory to ``target``."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "xlatent.cli", "train", "--recipe", recipe, "--out", str(work)]
    print("$ " + " ".join(cmd[2:]).replace("xlatent.cli", "xlatent", 1), flush=True)
    subprocess.run(cmd, check=True)
    print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    files = []
    for path in sorted(work.iterdir()):
        if not path.is_file() or path.name in SKIP:
            continue
        if path.name == IDS and path.stat().st_size > max_ids_bytes:
            print(f"skipped {IDS} ({path.stat().st_size} bytes > {max_ids_bytes})")
            continue
        files.append(path)
    staging = target.with_name(target.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in files:
        shutil.copy2(path, staging / path.name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return sorted(target.iterdir())


def check(target: Path) -> None:
    """The shipped copy loads (as data) and encodes a few simulated spectra."""
    from xlatent.model import SpectralAutoencoder
    from xlatent.model.pretrained import PRETRAINED_DIR, pretrained_summary
    from xlatent.physics.simulator import simulate

    if target.resolve() != PRETRAINED_DIR:
        print(f"note: {target} is not where this xlatent looks ({PRETRAINED_DIR})")
        return
    model = SpectralAutoencoder.pretrained(device="cpu")
    z = model.transform(simulate(50, seed=12345))
    print(pretrained_summary())
    print(f"encoded 50 simulated spectra: latents {z.shape}, all finite: {bool((z == z).all())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="default")
    ap.add_argument("--work", type=Path, help="Model directory to train into (default: temp).")
    ap.add_argument("--target", type=Path, default=TARGET)
    ap.add_argument("--max-ids-bytes", type=int, default=1 << 20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xlatent-pretrained-") as tmp:
        work = args.work or Path(tmp) / "model"
        shipped = build(args.recipe, work, args.target, args.max_ids_bytes)
    for path in shipped:
        print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: "
              f"{path.stat().st_size} bytes")  # fmt: skip
    check(args.target)


if __name__ == "__main__":
    main()
