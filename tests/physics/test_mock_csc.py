"""physics.mock_csc: the mock CSC archive ingests, joins and verifies to the simulated truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from xlatent.io.csc.join import join_files
from xlatent.io.csc.products import parse_product_name
from xlatent.io.csc.verify import verify_fits
from xlatent.io.ingest import ingest_paths
from xlatent.physics.mock_csc import write_mock_archive

PAIRS = [
    ("acisf00308_000N001_r0044_arf3.fits", "acisf00308_000N001_r0044_rmf3.fits"),
    ("9774.arf", "9774.rmf"),
]
KEY = ["obsid", "obi", "region_id"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, real_spectra_dir: Path):  # noqa: ANN201
    responses = [(real_spectra_dir / a, real_spectra_dir / r) for a, r in PAIRS]
    out = tmp_path_factory.mktemp("mock")
    return write_mock_archive(out, 40, seed=3, responses=responses, n_obsids=6,
                              n_interleaved=1, n_mixed_version=2, repeat_fraction=1.0)  # fmt: skip


@pytest.fixture(scope="module")
def ingested(archive):  # noqa: ANN001, ANN201
    result = ingest_paths(archive.root, progress=False)
    assert result.skipped == []
    return result.spectrum_set


def _by_file(archive, ingested):  # noqa: ANN001, ANN202
    """Row of the ingested set for each truth row (matched by pha3 path)."""
    pos = {str(Path(f).resolve()): i for i, f in enumerate(ingested.meta["source_file"])}
    return np.array([pos[str(Path(f).resolve())] for f in archive.truth["pha3"]])


def test_every_detection_ingests_to_the_simulated_counts(archive, ingested) -> None:  # noqa: ANN001
    assert len(ingested) == archive.n_detections == 40
    rows = _by_file(archive, ingested)
    sim = archive.spectra
    assert np.array_equal(ingested.counts[rows], sim.counts)
    assert np.allclose(ingested.background[rows], sim.background, rtol=1e-9, atol=1e-12)
    assert np.allclose(ingested.exposure_s[rows], sim.exposure_s, rtol=1e-12)
    assert np.allclose(ingested.effective_area_cm2[rows], sim.effective_area_cm2, rtol=1e-6)
    for b in "smhb":
        got = ingested.meta[f"net_counts_{b}"].to_numpy()[rows]
        assert np.allclose(got, archive.truth[f"net_counts_{b}"], rtol=1e-9, atol=1e-9)
    assert len(set(archive.truth["response"])) == 1 + len(PAIRS)  # built-in + real ones


def test_file_names_and_headers_are_csc_form(archive) -> None:  # noqa: ANN001
    for (obsid, obi, rid), row in archive.truth.iterrows():
        pha = Path(row["pha3"])
        assert pha.parent.name == f"{obsid:05d}" and pha.parent.parent == archive.root
        cyc = f"_e{row['cycle']}" if row["cycle"] else ""
        assert pha.name.startswith(f"acisf{obsid:05d}_{obi:03d}N") and pha.name.endswith(
            f"{cyc}_r{rid:04d}_pha3.fits"
        )
        with fits.open(pha) as h:
            assert [x.name for x in h] == ["PRIMARY", "SPECTRUM", "GTI", "SPECTRUM"]
            src, bkg = h[1].header, h[3].header
            assert (src["HDUCLAS2"], bkg["HDUCLAS2"]) == ("TOTAL", "BKG")
            assert src["BACKFILE"] == pha.name
            assert src["ANCRFILE"] == Path(row["arf3"]).name
            assert src["RESPFILE"] == Path(row["rmf3"]).name
            assert src["OBS_ID"] == str(obsid) and src["OBI_NUM"] == obi
            assert src["REGIONID"] == f"{rid:04d}" and src["OBJECT"] == "CSC"
            assert src["CYCLE"] == ("S" if row["cycle"] == 2 else "P")
            assert (src["TLMIN1"], src["TLMAX1"]) == (1, 1024)
            assert 0 < src["BACKSCAL"] < bkg["BACKSCAL"] < 1
        with fits.open(row["rmf3"]) as h:
            assert h[1].name == "RSP_MATRIX" and h[2].name == "EBOUNDS"
        with fits.open(row["arf3"]) as h:
            assert h[1].name == "SPECRESP"


def test_interleaved_and_mixed_version_products_ingest(archive, ingested) -> None:  # noqa: ANN001
    truth = archive.truth
    cycles = set(truth["cycle"])
    assert {1, 2} <= cycles and 0 in cycles
    mixed = truth[truth["pha3"].str.contains("N022")]
    assert len(mixed) == 2
    assert mixed["arf3"].str.contains("N021").all() and mixed["rmf3"].str.contains("N021").all()
    rows = _by_file(archive, ingested)  # every one of them was ingested (and counts match above)
    assert len(set(rows)) == len(truth)
    il = truth["cycle"].to_numpy() > 0
    assert np.array_equal(ingested.counts[rows[il]], archive.spectra.counts[il])


def test_interleaved_products_keep_their_detection_key(archive, ingested) -> None:  # noqa: ANN001
    rows = _by_file(archive, ingested)
    il = archive.truth["cycle"].to_numpy() > 0
    got = ingested.meta[KEY].to_numpy()[rows[il]]
    assert np.array_equal(got, archive.truth.index.to_frame().to_numpy()[il])
    assert all(parse_product_name(Path(f).name) for f in archive.truth["pha3"][il])


def test_names_repeat_across_obsids_with_one_class(archive) -> None:  # noqa: ANN001
    t = archive.truth.reset_index()
    per_name = t.groupby("name").agg(n_obs=("obsid", "nunique"), n_cls=("source_class", "nunique"))
    assert (per_name["n_obs"] >= 2).any()
    assert (per_name["n_cls"] == 1).all()
    assert t.set_index(KEY).index.is_unique


def test_catalog_and_labels_join_gives_every_detection_its_class(archive, ingested) -> None:  # noqa: ANN001
    cat = pd.read_parquet(archive.catalog_path)
    for col in ("name", "ra", "dec", "obsid", "obi", "region_id", "src_cnts_aper_b",
                "flux_aper_b", "hard_hm", "var_prob_b", "powlaw_gamma", "match_type"):  # fmt: skip
        assert col in cat
    assert (cat["match_type"] == "u").all() and len(cat) == archive.n_detections
    labels = pd.read_csv(archive.labels_path)
    assert list(labels.columns[[0, -1]]) == ["CSCv2_name", "True_Class"]
    ingested.meta["source_class"] = ""  # the join alone must supply the classes
    joined = join_files(ingested, archive.catalog_path, archive.labels_path)
    rows = _by_file(archive, joined)  # interleaved (_e1/_e2) detections included
    assert np.array_equal(
        joined.meta["source_class"].to_numpy()[rows], archive.truth["source_class"].to_numpy()
    )
    assert np.array_equal(joined.meta["name"].to_numpy()[rows], archive.truth["name"].to_numpy())


def test_every_file_passes_the_download_verifier(archive) -> None:  # noqa: ANN001
    files = archive.files()
    assert len(files) == 3 * archive.n_detections
    for f in files:
        verify_fits(f)
        assert parse_product_name(f.name) or "_e" in f.name


def test_gzip_archive_and_reproducibility(tmp_path: Path) -> None:
    a = write_mock_archive(tmp_path / "a", 12, seed=9, gzip=True, n_obsids=3)
    b = write_mock_archive(tmp_path / "b", 12, seed=9, gzip=True, n_obsids=3)
    assert all(p.name.endswith(".fits.gz") for p in a.files())
    assert np.array_equal(a.spectra.counts, b.spectra.counts)
    assert list(a.truth.index) == list(b.truth.index)
    for f in a.files():
        verify_fits(f)
    s = ingest_paths(a.root, progress=False).spectrum_set
    rows = _by_file(a, s)
    assert np.array_equal(s.counts[rows], a.spectra.counts)
    apparent, on_disk = a.size_bytes()
    assert on_disk < apparent  # ARF/RMF hard-linked within each ObsID
