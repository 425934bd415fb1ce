"""``xlatent csc query|download`` and ``xlatent ingest --catalog --labels`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xlatent.cli import app

from .fake_csc import member


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_csc_help_names_units() -> None:
    result = run("csc", "query", "--help")
    assert result.exit_code == 0
    assert "arcmin" in result.output and "XLATENT_CSC_TAP_URL" in result.output
    result = run("csc", "download", "--help")
    assert result.exit_code == 0 and "--workers" in result.output


def test_query_download_ingest_cli(fake_csc, tmp_path: Path, td_csv: Path) -> None:
    pytest.importorskip("xlatent.io.ingest")
    cat = tmp_path / "catalog.fits"
    env = {"XLATENT_CSC_TAP_URL": fake_csc.tap_url}  # the URL may come from the environment
    result = run("csc", "query", "--min-counts", "40", "--out", cat, "--retries", "0", env=env)
    assert result.exit_code == 0, result.output
    assert "6 detections of 6 sources" in result.output and cat.is_file()

    data = tmp_path / "data"
    fake_csc.fail_retrieve = ["500"]
    args = ["csc", "download", cat, "--dir", data, "--url", fake_csc.retrieve_url]
    args += ["--backoff", "0.01", "--no-progress", "--batch-size", "3"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "6 downloaded" in result.output
    assert json.loads((data / "csc_download_report.json").read_text())["n_downloaded"] == 6

    out = tmp_path / "set.h5"
    result = run("ingest", data, "--out", out, "--catalog", cat, "--labels", td_csv)
    assert result.exit_code == 0, result.output
    from xlatent.core import SpectrumSet

    s = SpectrumSet.read(out)
    assert len(s) == 6 and (s.meta["name"] != "").all() and (s.meta["source_class"] != "").all()
    assert "hard_hm" in s.meta and "hr_counts_hm" in s.meta and "powlaw_nh" in s.meta


def test_cli_errors_are_one_line(fake_csc, tmp_path: Path) -> None:
    missing = run("csc", "download", tmp_path / "nope.fits", "--dir", tmp_path / "d")
    assert missing.exit_code == 1
    assert "error:" in missing.output and "no such file" in missing.output
    assert "Traceback" not in missing.output

    fake_csc.fail_tap = ["500"] * 3
    result = run(
        "csc", "query", "--out", tmp_path / "c.fits", "--url", fake_csc.tap_url,
        "--retries", "1", "--backoff", "0.01",
    )  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {fake_csc.tap_url}: " in result.output

    bad = run("csc", "query", "--out", tmp_path / "c.txt", "--url", fake_csc.tap_url)
    assert bad.exit_code == 1 and "unknown catalogue format" in bad.output
    assert not (tmp_path / "c.txt").exists()


def test_download_exit_status_only_when_nothing_came(fake_csc, tmp_path: Path) -> None:
    from xlatent.io.csc import query_csc, write_catalog

    cat = write_catalog(query_csc(url=fake_csc.tap_url, retries=0), tmp_path / "cat.csv")
    args = ["csc", "download", cat, "--dir", tmp_path / "d", "--url", fake_csc.retrieve_url]
    args += ["--retries", "0", "--no-progress", "--batch-size", "3", "--workers", "1"]
    fake_csc.fail_retrieve = ["503", "503"]
    nothing = run(*args)
    assert nothing.exit_code == 1 and "nothing could be downloaded" in nothing.output
    assert "HTTP 503" in nothing.output
    fake_csc.fail_retrieve = ["503"]  # one batch fails, the other comes: success, reported
    partial = run(*args)
    assert partial.exit_code == 0, partial.output
    assert "3 downloaded" in partial.output and "3 failed" in partial.output


def test_download_caps_are_options(fake_csc, tmp_path: Path) -> None:
    """--max-archive-mb, --max-member-mb reach download_spectra; refused members are counted."""
    import pandas as pd

    cat = tmp_path / "catalog.csv"
    keys = [d.key for d in fake_csc.detections]
    pd.DataFrame(keys, columns=["obsid", "obi", "region_id"]).to_csv(cat, index=False)
    args = ["csc", "download", cat, "--url", fake_csc.retrieve_url, "--retries", "0"]
    args += ["--no-progress", "--batch-size", "6"]
    small = run(*args, "--dir", tmp_path / "a", "--max-archive-mb", "1")
    assert small.exit_code == 1, small.output
    assert "the cap is 1048576 B per archive" in small.stderr
    assert small.stderr.strip().splitlines()[-1].startswith("error: ")

    one = run(*args, "--dir", tmp_path / "m", "--max-member-mb", "1")
    assert one.exit_code == 1, one.output
    assert "larger than the cap of 1048576 B" in one.stderr

    assert run(*args, "--dir", tmp_path / "z", "--max-archive-mb", "0").exit_code == 2

    fake_csc.extra_members = [member("README.txt", b"hello")]  # one archive: refused once
    ok = run(*args, "--dir", tmp_path / "ok")
    assert ok.exit_code == 0, ok.output
    assert "6 downloaded, 0 already complete, 0 failed; 1 archive member(s) refused" in ok.stdout
