"""Benchmark ``xlatent explore``: build time and page size at 100,000 points, and the browser.

    PYTHONPATH=src python benchmarks/explore.py [--n 100000] [--catalog-n 0] [--browser]

A synthetic catalogue of ``--n`` spectra (8-d latents in blobs, class, hardness ratios, N_H,
variability, net counts) and a synthetic SpectrumSet of the same spectra (absorbed power laws
on the default 128-bin grid, with noiseless expected counts, so the page carries two curves
per point). Prints the build time of :func:`xlatent.analysis.explore.explore` by step and the
page size. ``--catalog-n N`` (> n) makes the catalogue N rows, subsampled to ``--n`` points
(outliers kept). ``--browser``: also opens the page in headless Chromium (Playwright, the
system's browser) and prints the time until every point is drawn. Targets: <= 60 s and
<= 50 MB at 100,000 points.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from xlatent.analysis.explore import explore
from xlatent.core import EnergyGrid, SpectrumSet
from xlatent.core.vocabulary import CLASSES


def synthetic(n: int, seed: int) -> tuple[pd.DataFrame, SpectrumSet]:
    rng = np.random.default_rng(seed)
    grid = EnergyGrid.default()
    e = grid.centers_kev
    k = rng.integers(0, len(CLASSES), n)
    gamma = 1.0 + 0.25 * k + rng.normal(0, 0.2, n)
    nh = 10 ** (-1.5 + 0.3 * k + rng.normal(0, 0.3, n))
    shape = e[None, :] ** -gamma[:, None] * np.exp(-nh[:, None] * 2.0 * e[None, :] ** -2.6)
    expected = shape / shape.sum(1, keepdims=True) * (10 ** rng.uniform(1.3, 3.5, n))[:, None]
    bkg = np.full((n, grid.n_bins), 0.01)
    meta = pd.DataFrame({"spec_id": [f"b{i:07d}" for i in range(n)],
                         "name": [f"2CXO J{i:07d}" for i in range(n)],
                         "source_class": np.array(CLASSES, dtype=object)[k],
                         "truth_nh_1e22": nh, "var_prob_b": rng.uniform(0, 1, n)})  # fmt: skip
    s = SpectrumSet(grid=grid, counts=rng.poisson(expected + bkg).astype(float),
                    background=bkg, exposure_s=np.full(n, 2e4),
                    effective_area_cm2=np.full((n, grid.n_bins), 400.0), meta=meta,
                    expected_counts=expected).update_band_columns()  # fmt: skip
    z = rng.normal(0, 3, (len(CLASSES), 8))[k] + rng.normal(0, 1, (n, 8))
    cat = s.meta.copy()
    for i in range(8):
        cat[f"latent_{i}"] = z[:, i]
    return cat, s


def open_in_browser(page: Path) -> float:
    """Seconds from navigation until the map's glyph view has every point's screen position."""
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=exe,
                                                    headless=True, args=flags)  # fmt: skip
        p = ctx.new_page()
        t0 = time.perf_counter()
        p.goto(page.as_uri(), timeout=300_000)
        p.wait_for_function("""() => {
          if (!window.Bokeh || !Bokeh.documents.length) return false;
          const r = Bokeh.documents[0].get_model_by_name('map');
          for (const root of Object.values(Bokeh.index)) {
            try { const v = root.owner.get_one(r);
                  return v.glyph.sx && v.glyph.sx.length === r.data_source.data.x.length; }
            catch (e) {}
          }
          return false;
        }""", timeout=300_000)  # fmt: skip
        dt = time.perf_counter() - t0
        ctx.close()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="points shown")
    ap.add_argument("--catalog-n", type=int, default=0, help="catalogue rows (> n: subsampled)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--browser", action="store_true", help="also time loading it in Chromium")
    ap.add_argument("--out", default=None, help="keep the page here")
    args = ap.parse_args()
    rows = max(args.n, args.catalog_n)
    t = time.perf_counter()
    cat, s = synthetic(rows, args.seed)
    print(f"synthetic catalogue and set of {rows:,} spectra: {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "explore.html"
        t = time.perf_counter()
        r = explore(cat, out, s, max_points=args.n)
        wall = time.perf_counter() - t
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r.timings_s.items())
        size_mb = r.size_bytes / 1e6
        print(f"explore: {r.n_shown:,} of {r.n_total:,} points, {r.projection.upper()} map, "
              f"spectra {r.spectra}: {wall:.1f} s ({steps}); page {size_mb:.1f} MB")  # fmt: skip
        if args.browser:
            print(f"headless Chromium: every point drawn {open_in_browser(out):.1f} s after "
                  "navigation")  # fmt: skip


if __name__ == "__main__":
    main()
