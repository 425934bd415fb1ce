"""io.response_pairs and `xlatent simulate --responses DIR`: pairing real ARF/RMF files."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import SpectrumSet
from xlatent.io.response_pairs import find_response_pairs

R308 = "acisf00308_000N001_r0044"
R1878 = "acisf01878_000N001_r0100"


def _names(found) -> list[tuple[str, str]]:  # noqa: ANN001
    return sorted((a.name, r.name) for a, r, _ in found.paths)


def test_the_real_spectra_pair_by_their_pha_keywords(real_spectra_dir: Path) -> None:
    found = find_response_pairs(real_spectra_dir)
    assert found.skipped == []
    assert _names(found) == [
        ("9774.arf", "9774.rmf"),
        (f"{R308}_arf3.fits", f"{R308}_rmf3.fits"),
        # The PHA names the files without .gz; the folder holds them gzipped.
        ("acisf01575_001N001_r0085_arf3.fits.gz", "acisf01575_001N001_r0085_rmf3.fits.gz"),
        (f"{R1878}_arf3.fits", f"{R1878}_rmf3.fits"),
    ]
    assert all(pha is not None for _, _, pha in found.paths)
    assert len(found.responses) == 4
    # Each response keeps its spectrum: 1575's ARF spans CCDs 6 and 7 (DETNAM ACIS-67), and
    # only the PHA's source GTI says the source was on S3 (back-illuminated) 3.4' off-axis.
    assert [Path(r.pha_path).name for r in found.responses] == [p.name for _, _, p in found.paths]
    from xlatent.physics.responses import response_context

    ctx = response_context(found.responses[2])
    assert (ctx["ccd_id"], ctx["chip_type"], ctx["detector"]) == (7, "BI", "ACIS-S")
    assert abs(ctx["theta_arcmin"] - 3.38) < 0.01


def test_stems_lone_rmf_and_a_damaged_file(real_spectra_dir: Path, tmp_path: Path) -> None:
    src = real_spectra_dir
    stems = tmp_path / "stems"
    stems.mkdir()
    shutil.copy(src / "9774.arf", stems / "x.arf")
    shutil.copy(src / "9774.rmf", stems / "x.rmf")
    shutil.copy(src / f"{R308}_arf3.fits", stems / "y_arf3.fits")
    shutil.copy(src / f"{R308}_rmf3.fits", stems / "y_rmf3.fits")
    # A damaged pair: the RMF cut short. It is skipped with a reason, the rest are used.
    shutil.copy(src / f"{R1878}_arf3.fits", stems / "z.arf")
    (stems / "z.rmf").write_bytes((src / f"{R1878}_rmf3.fits").read_bytes()[:20000])
    (stems / "notes.txt").write_text("not a response")
    found = find_response_pairs(stems)
    assert _names(found) == [("x.arf", "x.rmf"), ("y_arf3.fits", "y_rmf3.fits")]
    assert [p.name for p, _ in found.skipped] == ["z.rmf"]
    assert "RMF" in found.skipped[0][1]
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(src / f"{R308}_rmf3.fits", lone / "only.rmf")
    shutil.copy(src / f"{R308}_arf3.fits", lone / "a.arf")
    shutil.copy(src / f"{R1878}_arf3.fits", lone / "b.arf")
    assert _names(find_response_pairs(lone)) == [("a.arf", "only.rmf"), ("b.arf", "only.rmf")]


def test_a_pha_naming_a_missing_response_is_reported(
    real_spectra_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(real_spectra_dir / f"{R308}_pha3.fits", tmp_path / f"{R308}_pha3.fits")
    shutil.copy(real_spectra_dir / f"{R308}_arf3.fits", tmp_path / f"{R308}_arf3.fits")
    found = find_response_pairs(tmp_path)
    assert found.responses == []
    assert any(f"{R308}_rmf3.fits" in reason for _, reason in found.skipped)


def test_cli_simulate_responses(real_spectra_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim.h5"
    args = ["simulate", "--n", "80", "--seed", "1", "--responses", str(real_spectra_dir)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.count("response: ") == 4
    s = SpectrumSet.read(out)
    assert not s.meta["response_id"].str.startswith("acis-").any()  # --real-fraction 1
    assert s.meta["response_id"].nunique() > 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.arf").write_bytes(b"SIMPLE  = junk")
    (bad / "x.rmf").write_bytes(b"")
    result = CliRunner().invoke(app, ["simulate", "--n", "5", "--responses", str(bad),
                                      "--out", str(tmp_path / "b.h5")])  # fmt: skip
    assert result.exit_code == 1
    assert "skipped" in result.output and "no usable ARF/RMF pair" in result.output
    assert not (tmp_path / "b.h5").exists()
    fixed = tmp_path / "fixed.h5"
    fix = ["--instrument-chip", "FI", "--epoch", "2020.5", "--theta", "2"]
    result = CliRunner().invoke(app, ["simulate", "--n", "20", *fix, "--out", str(fixed)])
    assert result.exit_code == 0, result.output
    m = SpectrumSet.read(fixed).meta
    assert (m["chip_type"] == "FI").all() and (m["epoch_year"] == 2020.5).all()
    assert (m["theta_arcmin"] == 2.0).all()
