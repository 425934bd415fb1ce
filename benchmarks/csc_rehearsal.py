"""Issue 16's rehearsal at catalogue scale, on a mock CSC archive (no network).

Stages, each timed: write a mock archive (:func:`xlatent.physics.mock_csc.write_mock_archive`,
the four real ACIS responses in ``shared/data/real_spectra`` and the built-in one) ->
download (:func:`download_through`: through the loopback stand-in once it exists; for now the
files are used in place) -> ingest + join with the catalogue and labels -> train (PCA, and the
autoencoder for a few epochs) -> encode -> evaluate, all through the Python API. Checks that
every detection's counts and label arrive intact, and prints the figures.

    python benchmarks/csc_rehearsal.py [--n 2000] [--epochs 3] [--out DIR] [--gzip]
"""

from __future__ import annotations

import argparse
import os
import resource
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


def download_through(archive_dir: Path, stand_in_url: str | None = None, **_: object) -> Path:
    """The download stage: fetch every detection of the archive's catalogue through the CSC
    client from the stand-in service at ``stand_in_url`` into a fresh directory and return
    it. Until the stand-in lands this is the identity: the written files are used in place."""
    if stand_in_url is None:
        print("download: skipped (no stand-in); files used in place")
        return archive_dir
    raise NotImplementedError("download through the stand-in: to be added with the stand-in")


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

    data_dir, _ = _timed("download", download_through, archive.root, None)

    result, t_ing = _timed("ingest", ingest_paths, data_dir, progress=False)
    s = result.spectrum_set
    print(f"  {len(s)} spectra, {len(result.skipped)} skipped, {len(s) / t_ing:.0f} spectra/s, "
          f"peak RSS {_rss_gb():.1f} GB")  # fmt: skip
    s.meta["source_class"] = ""
    s, t_join = _timed("join", join_files, s, archive.catalog_path, archive.labels_path)
    print(f"  ingest + join: {len(s) / (t_ing + t_join):.0f} spectra/s")

    # Every detection's counts and label must arrive intact.
    pos = {str(Path(f).resolve()): i for i, f in enumerate(s.meta["source_file"])}
    rows = np.array([pos.get(str(Path(f).resolve()), -1) for f in t["pha3"]])
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
    assert ok[~il].all(), "a non-interleaved detection lost its label"

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
