"""Ingest throughput: many copies of the real Chandra spectra sharing cached responses.

Each copy lives in its own directory with the PHA file (and its background) copied and the
ARF/RMF symlinked to one shared file, as in a CSC download where many detections of an
observation share a response. Prints spectra per second on one core.

    python benchmarks/ingest.py [--copies 500] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from xlatent.io.ingest import ingest_paths  # noqa: E402
from xlatent.io.ogip_response import ResponseCache  # noqa: E402

TEMPLATES = {
    "acisf00308_000N001_r0044": ".fits",
    "acisf01575_001N001_r0085": ".fits.gz",
    "acisf01878_000N001_r0100": ".fits",
}


def build(real: Path, root: Path, copies: int) -> None:
    shared = root / "responses"
    shared.mkdir()
    for f in real.iterdir():
        if "arf" in f.name or "rmf" in f.name:
            shutil.copy(f, shared / f.name)
    per = copies // (len(TEMPLATES) + 1)
    for i in range(copies):
        d = root / f"det{i:05d}"
        d.mkdir()
        which = i // per if i // per < len(TEMPLATES) else None
        if which is None:  # the specextract layout: 9774.pi + 9774_bg.pi
            names, links = ["9774.pi", "9774_bg.pi"], ["9774.arf", "9774.rmf"]
        else:
            stem, ext = list(TEMPLATES.items())[which]
            names, links = [f"{stem}_pha3{ext}"], [f"{stem}_arf3{ext}", f"{stem}_rmf3{ext}"]
        for n in names:
            shutil.copy(real / n, d / n)
        for n in links:
            (d / n).symlink_to(shared / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--copies", type=int, default=500)
    default_shared = Path(__file__).resolve().parents[1].parent / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("XLATENT_SHARED", default_shared))
    )
    args = ap.parse_args()
    real = args.shared / "data" / "real_spectra"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(real, root, args.copies)
        cache = ResponseCache()
        t0 = time.perf_counter()
        result = ingest_paths([root], progress=False, cache=cache)
        dt = time.perf_counter() - t0
    n = result.n_ingested
    print(f"ingested {n} spectra ({len(result.skipped)} skipped) in {dt:.2f} s")
    print(f"throughput: {n / dt:.0f} spectra/s on one core (target >= 200)")
    print(f"response files parsed: {cache.reads} (cached for the other {2 * n - cache.reads} uses)")


if __name__ == "__main__":
    main()
