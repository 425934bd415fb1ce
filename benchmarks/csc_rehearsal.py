"""Issue 16's rehearsal at catalogue scale, on a mock CSC archive (no network).

Stages, each timed: write a mock archive (:func:`xlatent.physics.mock_csc.write_mock_archive`,
the four real ACIS responses in ``shared/data/real_spectra`` and the built-in one) ->
download (:func:`download_through`: query and retrieve through the loopback CSC stand-in of the
tests, which speaks only the real protocol) -> ingest + join with the catalogue and labels ->
train (PCA, and the autoencoder for a few epochs) -> encode -> evaluate, all through the
Python API. Checks that every detection's counts and label arrive intact; prints the figures.

    python benchmarks/csc_rehearsal.py [--n 2000] [--epochs 3] [--out DIR] [--gzip] [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REAL_PAIRS = [
    ("acisf00308_000N001_r0044_arf3.fits", "acisf00308_000N001_r0044_rmf3.fits"),
    ("acisf01575_001N001_r0085_arf3.fits.gz", "acisf01575_001N001_r0085_rmf3.fits.gz"),
    ("acisf01878_000N001_r0100_arf3.fits", "acisf01878_000N001_r0100_rmf3.fits"),
    ("9774.arf", "9774.rmf"),
]


def download_through(archive, root: Path, batch_size: int = 50, workers: int = 4) -> Path:  # noqa: ANN001
    """The download stage: serve the archive with the loopback CSC stand-in (it answers only
    the real protocol: TAP sync queries, GET csccli/retrieve with ','-joined /b entries), query
    it with the CSC client and download every detection into a fresh directory."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "io"))
    from csc.rehearsal import serve  # the tests' stand-in, tests/io/csc/rehearsal.py

    from xlatent.io.csc.download import download_spectra
    from xlatent.io.csc.query import QueryCriteria, query_csc

    fake = serve(archive.root, archive.catalog_path)
    try:
        crit = QueryCriteria(min_counts=0, min_significance=0, max_theta_arcmin=30)
        cat = query_csc(crit, url=fake.tap_url)
        out = root / "downloaded"
        report = download_spectra(cat, out, url=fake.retrieve_url, batch_size=batch_size,
                                  workers=workers, progress=False)  # fmt: skip
    finally:
        fake.stop()
    print(f"  queried {len(cat)} detections; downloaded {report.n_complete}, "
          f"failed {len(report.failed)}, {len(fake.retrieve_log)} GET requests")  # fmt: skip
    assert report.n_complete == len(cat) == len(archive.truth), "download incomplete"
    return out


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # ru_maxrss is in KiB


def _timed(label: str, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    dt = time.perf_counter() - t0
    print(f"{label}: {dt:.1f} s")
    return out, dt


def main() -> None:  # noqa: PLR0915
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="ingest worker processes")
    ap.add_argument("--out", type=Path, default=None)
    default_shared = Path(__file__).resolve().parents[1].parent / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("XLATENT_SHARED", default_shared))
    )
    args = ap.parse_args()
    real = args.shared / "data" / "real_spectra"
    responses = [(real / a, real / r) for a, r in REAL_PAIRS if (real / a).is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(args.out or tmp), args, responses)


def run(root: Path, args: argparse.Namespace, responses: list) -> None:  # noqa: PLR0915
    from xlatent.analysis import evaluate
    from xlatent.core.split import split_column
    from xlatent.io.csc.join import join_files
    from xlatent.io.ingest import ingest_paths
    from xlatent.model import PCABaseline, SpectralAutoencoder
    from xlatent.model.catalog import latent_catalog
    from xlatent.physics.mock_csc import write_mock_archive

    t_all = time.perf_counter()
    n = args.n
    print(f"mock CSC rehearsal: {n} detections, {len(responses)} real responses + built-in")
    archive, t_write = _timed(
        "write", write_mock_archive, root / "archive", n, seed=args.seed,
        responses=responses, gzip=args.gzip,
    )  # fmt: skip
    apparent, on_disk = archive.size_bytes()
    t = archive.truth
    n_obs = t.index.get_level_values("obsid").nunique()
    n_rep = int((t.reset_index().groupby("name")["obsid"].nunique() > 1).sum())
    print(f"  {n / t_write:.0f} detections/s; {n_obs} ObsIDs, {len(archive.responses)} responses,"
          f" {n_rep} sources in 2+ ObsIDs, {(t['cycle'] > 0).sum()} interleaved detections, "
          f"{t['pha3'].str.contains('N022').sum()} mixed-version")  # fmt: skip
    print(f"  size: {apparent / 1e6:.0f} MB apparent, {on_disk / 1e6:.0f} MB on disk; per 1,000 "
          f"detections {apparent / n * 1e-3:.0f} MB / {on_disk / n * 1e-3:.0f} MB")  # fmt: skip

    data_dir, t_dl = _timed("download (query + retrieve + verify)", download_through, archive, root)
    print(f"  {n / t_dl:.0f} detections/s")

    result, t_ing = _timed("ingest", ingest_paths, data_dir, progress=False,
                           workers=args.workers)  # fmt: skip
    s = result.spectrum_set
    print(f"  {len(s)} spectra, {len(result.skipped)} skipped, {len(s) / t_ing:.0f} spectra/s, "
          f"peak RSS {_rss_gb():.1f} GB")  # fmt: skip
    s.meta["source_class"] = ""
    s, t_join = _timed("join", join_files, s, archive.catalog_path, archive.labels_path)
    print(f"  ingest + join: {len(s) / (t_ing + t_join):.0f} spectra/s; download + ingest + join: "
          f"{len(s) / (t_dl + t_ing + t_join):.1f} detections/s")  # fmt: skip

    # Every detection's counts and label must arrive intact (matched by detection key).
    keys = zip(s.meta["obsid"], s.meta["obi"], s.meta["region_id"], strict=True)
    pos = {k: i for i, k in enumerate(keys)}
    rows = np.array([pos.get(tuple(int(v) for v in k), -1) for k in t.index])
    assert (rows >= 0).all(), f"{(rows < 0).sum()} detections not ingested"
    assert np.array_equal(s.counts[rows], archive.spectra.counts), "counts changed"
    assert np.allclose(s.background[rows], archive.spectra.background, rtol=1e-9, atol=1e-12)
    got = s.meta["source_class"].to_numpy()[rows]
    ok = got == t["source_class"].to_numpy()
    il = t["cycle"].to_numpy() > 0
    print(
        f"  counts intact: {len(rows)}/{n}; labels intact: {ok.sum()}/{n} "
        f"({(~ok & il).sum()} interleaved and {(~ok & ~il).sum()} other detections unlabelled)"
    )
    assert ok.all(), "a detection lost its label"

    s = s[np.flatnonzero(s.meta["source_class"].to_numpy() != "")]
    s.meta["split"] = split_column(s.meta, 0.2, args.seed)  # grouped by CSC name
    train = s[np.flatnonzero(s.meta["split"].to_numpy() == "train")]
    pca, t_pca = _timed("train PCA", PCABaseline(n_components=8).fit, train)
    ae = SpectralAutoencoder(latent_dim=8, epochs=args.epochs, seed=args.seed, progress=False)
    ae, t_ae = _timed(f"train autoencoder ({args.epochs} epochs)", ae.fit, train)
    z, t_enc = _timed("encode", ae.transform, s)
    print(f"  {len(s) / t_enc:.0f} spectra/s")
    lat = latent_catalog(s, z)
    metrics, t_eval = _timed(
        "evaluate", evaluate, s, lat, root / "eval", model=ae, pca=pca, seed=args.seed
    )
    d = metrics.get("data", {})
    print(f"  evaluated {d.get('n_evaluated')} spectra ({d.get('n_test')} held out); "
          f"peak RSS {_rss_gb():.1f} GB")  # fmt: skip
    print(f"end to end ({n} detections): {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
