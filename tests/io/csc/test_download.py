"""CSC spectrum download against the fake retrieval service, with injected network faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlatent.io.csc.download import REPORT_NAME, download_spectra, retrieve_url
from xlatent.io.csc.products import (
    Detection,
    complete_files,
    parse_product,
    parse_product_name,
)
from xlatent.io.csc.verify import CorruptFileError, verify_fits

FAST = {"retries": 3, "backoff_s": 0.01, "timeout_s": 0.4, "progress": False}


def all_dets(fake) -> list[Detection]:
    return [Detection(*d.key) for d in fake.detections]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.name != REPORT_NAME}


def test_names_and_packageset() -> None:
    det, product = parse_product_name("some/dir/acisf01575_001N001_r0085_pha3.fits.gz")
    assert det == Detection(1575, 1, 85) and product == "pha3"
    assert parse_product_name("hrcf00308_000N002_r0044_rmf3.fits") == (
        Detection(308, 0, 44),
        "rmf3",
    )
    assert parse_product_name("9774.pi") is None
    assert parse_product_name("acisf01575_001N001_r0085_regevt3.fits") is None
    assert Detection(1575, 1, 85).packageset() == [
        "1575.1.85/arf/b",
        "1575.1.85/rmf/b",
        "1575.1.85/spectrum/b",
    ]
    # interleaved mode: the cycle in the name; versions may differ within a detection
    e2 = parse_product("acisf04396_000N022_e2_r0012_pha3.fits")
    assert e2 == (Detection(4396, 0, 12), "pha3", 22, "e2", "acis")
    assert parse_product_name("acisf04396_000N021_e1_r0012_arf3.fits.gz") == (
        Detection(4396, 0, 12),
        "arf3",
    )
    assert parse_product("acisf04396_000N021_e3_r0012_arf3.fits") is None


def test_retrieve_url_option_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert retrieve_url("http://127.0.0.1:1/x") == "http://127.0.0.1:1/x"
    assert retrieve_url() == "http://127.0.0.1:9/unset"  # the env var the conftest sets
    monkeypatch.delenv("XLATENT_CSC_RETRIEVE_URL")
    assert retrieve_url() == "https://cda.cfa.harvard.edu/csccli/retrieve"


def test_download_all_in_batches_then_resume(fake_csc, tmp_path: Path) -> None:
    dets = all_dets(fake_csc)
    report = download_spectra(
        dets, tmp_path, url=fake_csc.retrieve_url, batch_size=2, workers=3, **FAST
    )
    assert sorted(report.downloaded) == sorted(dets) and not report.failed
    assert len(fake_csc.retrieve_log) == 3  # 6 detections in batches of 2
    for r in fake_csc.retrieve_log:  # GET, version, six ','-separated entries with the band
        assert r["method"] == "GET" and r["version"] == "rel2.1" and len(r["entries"]) == 6
        assert all(e.endswith(("/spectrum/b", "/arf/b", "/rmf/b")) for e in r["entries"])
    for det in dets:
        files = complete_files(tmp_path, det)
        assert files is not None
        for path in files.values():
            verify_fits(path)
            assert path.parent == tmp_path
    assert not list(tmp_path.glob(".csc-*"))  # no temporary file left behind
    saved = json.loads((tmp_path / REPORT_NAME).read_text())
    assert saved["n_downloaded"] == 6 and saved["n_failed"] == 0
    # the real files arrive byte for byte (the .gz one stays compressed)
    name, path = fake_csc.by_key[(1575, 1, 85)].files["rmf3"]
    assert (tmp_path / name).read_bytes() == path.read_bytes()
    # mixed processing versions in one detection: all three kept
    assert {p.name for p in complete_files(tmp_path, Detection(1878, 0, 101)).values()} == {
        "acisf01878_000N022_r0101_pha3.fits",
        "acisf01878_000N021_r0101_arf3.fits",
        "acisf01878_000N021_r0101_rmf3.fits",
    }

    before = snapshot(tmp_path)
    again = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, batch_size=2, **FAST)
    assert len(again.already_complete) == 6 and not again.downloaded
    assert len(fake_csc.retrieve_log) == 3  # nothing requested on a complete set
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fault", ["500", "503", "timeout", "truncate", "drop"])
def test_transient_faults_are_retried(fake_csc, tmp_path: Path, fault: str) -> None:
    fake_csc.fail_retrieve = [fault, fault]
    dets = all_dets(fake_csc)[:2]
    report = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert sorted(report.downloaded) == dets and not report.failed
    assert report.retries == 2 and len(fake_csc.retrieve_log) == 3


def test_persistent_failure_is_reported_and_a_rerun_completes(fake_csc, tmp_path: Path) -> None:
    dets = all_dets(fake_csc)
    url = fake_csc.retrieve_url
    first = download_spectra(dets[:2], tmp_path, url=url, **FAST)
    kept = snapshot(tmp_path)
    fake_csc.fail_retrieve = ["503"] * 10
    report = download_spectra(dets, tmp_path, url=url, batch_size=2, workers=1, **FAST)
    assert len(first.downloaded) == 2 and len(report.already_complete) == 2
    assert set(report.failed) == set(dets[2:])
    assert all("HTTP 503" in why and "after 3 retries" in why for why in report.failed.values())
    assert not report.nothing_downloaded
    saved = json.loads((tmp_path / REPORT_NAME).read_text())
    assert saved["n_failed"] == 4 and {f["region_id"] for f in saved["failed"]} == {
        d.region_id for d in dets[2:]
    }
    assert snapshot(tmp_path) == kept  # nothing already downloaded is lost or touched
    fake_csc.fail_retrieve = []
    rerun = download_spectra(dets, tmp_path, url=url, batch_size=2, **FAST)
    assert sorted(rerun.downloaded) == sorted(dets[2:]) and not rerun.failed
    assert all(complete_files(tmp_path, d) for d in dets)


def test_nothing_downloaded_flag(fake_csc, tmp_path: Path) -> None:
    fake_csc.fail_retrieve = ["500"] * 10
    report = download_spectra(
        all_dets(fake_csc)[:1], tmp_path, url=fake_csc.retrieve_url, **{**FAST, "retries": 1}
    )
    assert report.nothing_downloaded and report.failed
    assert list(tmp_path.iterdir()) == [tmp_path / REPORT_NAME]


def test_corrupt_fits_in_archive_is_rejected(fake_csc, tmp_path: Path) -> None:
    dets = all_dets(fake_csc)
    bad, bad_gz = Detection(308, 0, 44), Detection(1575, 1, 85)
    fake_csc.corrupt = {((308, 0, 44), "rmf3"), ((1575, 1, 85), "pha3")}
    report = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, batch_size=6, **FAST)
    assert set(report.failed) == {bad, bad_gz}
    assert "rmf3" in report.failed[bad] and "corrupt FITS" in report.failed[bad]
    assert "pha3" in report.failed[bad_gz]
    assert len(fake_csc.retrieve_log) == 1  # bad content is not a network fault: no retry
    # none of the bad detections' files are kept, not even their good ARF/PHA
    assert not list(tmp_path.glob("acisf00308_000N001_r0044_*"))
    assert not list(tmp_path.glob("acisf01575_001N001_r0085_*"))
    assert all(complete_files(tmp_path, d) for d in set(dets) - {bad, bad_gz})
    fake_csc.corrupt = set()
    rerun = download_spectra(dets, tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert sorted(rerun.downloaded) == sorted([bad, bad_gz]) and len(rerun.already_complete) == 4


def test_error_page_and_missing_detection(fake_csc, tmp_path: Path) -> None:
    fake_csc.fail_retrieve = ["html"]
    report = download_spectra(all_dets(fake_csc)[:1], tmp_path, url=fake_csc.retrieve_url, **FAST)
    (why,) = report.failed.values()
    assert "not a tar archive" in why and "archive is busy" in why
    assert len(fake_csc.retrieve_log) == 1
    unknown = Detection(4242, 0, 7)
    report = download_spectra(
        [unknown, *all_dets(fake_csc)[:1]], tmp_path, url=fake_csc.retrieve_url, **FAST
    )
    assert report.failed == {unknown: "not in the archive: arf, rmf, spectrum"}
    assert len(report.downloaded) == 1


def test_stale_temporary_files_are_cleared(fake_csc, tmp_path: Path) -> None:
    (tmp_path / ".csc-abc.part").write_bytes(b"half a download")
    download_spectra(all_dets(fake_csc)[:1], tmp_path, url=fake_csc.retrieve_url, **FAST)
    assert not list(tmp_path.glob(".csc-*"))


def test_verify_fits_detects_damage(real_spectra_dir: Path, tmp_path: Path) -> None:
    good = real_spectra_dir / "acisf00308_000N001_r0044_arf3.fits"
    verify_fits(good)
    data = good.read_bytes()
    cases = {
        "truncated.fits": data[: len(data) - 3000],
        "garbage.fits": b"\x00garbage" * 400,
        "flipped.fits": data[:4000] + bytes(b ^ 0xFF for b in data[4000:4100]) + data[4100:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CorruptFileError):
            verify_fits(path)


# --------------------------------------------------------------- the stand-in is strict
def test_stand_in_refuses_the_old_protocol(fake_csc) -> None:
    """POST, '+'-joined entries, entries without a band, retrievePackage: all refused."""
    import requests

    entries = Detection(308, 0, 44).packageset()
    ok = {"version": "rel2.1", "packageset": ",".join(entries)}
    good = requests.get(fake_csc.retrieve_url, params=ok, timeout=10)
    assert good.status_code == 200 and good.headers["Content-Type"] == "application/x-tar"
    assert requests.post(fake_csc.retrieve_url, data=ok, timeout=10).status_code == 405
    old = f"{fake_csc.base_url}/csccli/retrievePackage"
    assert requests.get(old, params=ok, timeout=10).status_code == 404
    for params in (
        {**ok, "packageset": "+".join(entries)},  # sent as %2B: one malformed entry
        {**ok, "packageset": ",".join(Detection(308, 0, 44).packageset(""))},  # no band
        {"packageset": ok["packageset"]},  # no version
        {**ok, "version": "2.1"},
        {"version": "rel2.1"},
    ):
        answer = requests.get(fake_csc.retrieve_url, params=params, timeout=10)
        assert answer.status_code == 400 and answer.text.startswith("Error: "), params


def test_stand_in_answer_is_one_folder_deep_with_csc_names(fake_csc) -> None:
    import io
    import tarfile

    import requests

    entries = Detection(1878, 0, 101).packageset() + ["9999.0.1/spectrum/b"]
    params = {"version": "cur", "packageset": ",".join(entries)}
    answer = requests.get(fake_csc.retrieve_url, params=params, timeout=10)
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
        names = sorted(tar.getnames())
    assert names == [  # the unknown detection adds nothing
        "1878/acisf01878_000N021_r0101_arf3.fits",
        "1878/acisf01878_000N021_r0101_rmf3.fits",
        "1878/acisf01878_000N022_r0101_pha3.fits",
    ]


def test_interleaved_and_mixed_versions_download_and_ingest_like_the_originals(
    real_spectra_dir: Path, tmp_path: Path, catalog_names: list[str]
) -> None:
    """Through the stand-in speaking only the real protocol, every detection of an archive
    with cycles (_e1, _e2) and mixed versions arrives and ingests as the originals do."""
    from xlatent.io.ingest import ingest_paths

    from .fake_csc import FakeCSC
    from .mock_archive import build_mock_archive, synthetic_catalog

    archive = build_mock_archive(real_spectra_dir, tmp_path / "archive", interleaved=True)
    assert len(archive.keys) == 8
    server = FakeCSC(archive, synthetic_catalog(archive.keys)).start()
    try:
        dets = [Detection(*k) for k in archive.keys]
        report = download_spectra(dets, tmp_path / "got", url=server.retrieve_url, **FAST)
    finally:
        server.stop()
    assert sorted(report.downloaded) == sorted(dets) and not report.failed
    got = {p.name for p in (tmp_path / "got").iterdir() if p.name != REPORT_NAME}
    originals = {n for d in archive.by_key.values() for n, _ in d.all_files}
    assert got == originals
    assert "acisf01575_001N001_e2_r0087_pha3.fits" in got
    assert "acisf01878_000N021_e1_r0102_rmf3.fits" in got
    mine = ingest_paths(tmp_path / "got", progress=False)
    theirs = ingest_paths(tmp_path / "archive", progress=False)
    assert mine.n_ingested == theirs.n_ingested == 8
    assert len(mine.skipped) == len(theirs.skipped) == 0


def test_parallel_verification_leaves_the_warning_filters_alone(fake_csc) -> None:
    # Download threads verify files at once; catch_warnings is not thread safe, and a leaked
    # "error" filter turned every later warning of the process into an exception (seen: a
    # torch deprecation warning failed `xlatent encode` after `csc download` in one process).
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    _, path = fake_csc.by_key[(1575, 1, 85)].files["arf3"]
    before = list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: verify_fits(path), range(400)))
    assert warnings.filters == before
