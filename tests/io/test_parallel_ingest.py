"""Parallel ingest (issue 17): chunks of files read by workers give the serial file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import SpectrumSet
from xlatent.io.ingest import ingest_paths, ingest_to_file
from xlatent.io.ingest_file import Spool
from xlatent.physics.simulator import simulate

from .conftest import write_mmu_file


@pytest.fixture(scope="module")
def pha_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 simulated PHA spectra (each with its own ARF and background), two files that are
    not spectra, a Multimodal Universe file among them, and a background named only by the
    BACKFILE of the first spectrum, sorted last (so in another chunk)."""
    d = tmp_path_factory.mktemp("pha")
    s = simulate(30, seed=7, write_pha=d)
    (d / "b_not_a_spectrum.pi").write_bytes(b"not FITS at all")
    (d / "sim-zz_broken.pha").write_bytes(b"SIMPLE  = garbage")
    write_mmu_file(d / "sim-m_mmu.h5")
    first = d / f"{s.meta['spec_id'][0]}.pha"
    shutil.copy(d / f"{s.meta['spec_id'][1]}_bkg.pha", d / "zzz_sky.pha")
    with fits.open(first) as hdul:
        hdul["SPECTRUM"].header["BACKFILE"] = "zzz_sky.pha"
        hdul.writeto(first, overwrite=True)
    return d


def written(s: SpectrumSet, path: Path) -> SpectrumSet:
    """``s`` written and read back (a file holds "" where memory holds NaN in text columns)."""
    s.write(path)
    return SpectrumSet.read_hdf5(path)


def assert_same_set(a: SpectrumSet, b: SpectrumSet) -> None:
    for name in ("counts", "background", "exposure_s", "effective_area_cm2"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.expected_counts is None) == (b.expected_counts is None)
    pd.testing.assert_frame_equal(a.meta, b.meta, check_exact=True)
    assert a.provenance == b.provenance
    assert a.grid == b.grid


def test_two_workers_write_the_serial_file(pha_dir: Path, tmp_path: Path) -> None:
    opts = {"chunk_files": 7, "min_parallel": 0, "progress": False}
    serial = ingest_to_file(pha_dir, tmp_path / "serial.h5", workers=1, **opts)
    parallel = ingest_to_file(pha_dir, tmp_path / "parallel.h5", workers=2, **opts)
    memory = ingest_paths(pha_dir, progress=False)
    assert serial.skipped == parallel.skipped == memory.skipped
    # Both bad files skipped with their reasons; the pure background is not a source.
    assert [Path(p).name for p, _ in serial.skipped] == [
        "b_not_a_spectrum.pi", "sim-zz_broken.pha"]  # fmt: skip
    assert "not a readable FITS file" in serial.skipped[1][1]
    a = SpectrumSet.read_hdf5(tmp_path / "serial.h5")
    b = SpectrumSet.read_hdf5(tmp_path / "parallel.h5")
    assert_same_set(a, b)
    assert_same_set(a, written(memory.spectrum_set, tmp_path / "memory.h5"))
    assert len(a) == 31 and serial.n_ingested == 31  # 30 PHA + the Multimodal Universe one
    assert a.meta["source_file"].str.endswith(".h5").tolist() == [False] * 30 + [True]
    assert not a.meta["source_file"].str.endswith("zzz_sky.pha").any()
    assert a.meta["bkg_file"][0].endswith("zzz_sky.pha")
    assert a.meta["spec_id"].is_unique


def test_chunks_and_the_file_path_do_not_change_the_set(pha_dir: Path, tmp_path: Path) -> None:
    """In one process (no Dask): one file per chunk, or all in one, same as in memory."""
    whole = written(ingest_paths(pha_dir, progress=False).spectrum_set, tmp_path / "m.h5")
    for size in (1, 1000):
        out = tmp_path / f"c{size}.h5"
        ingest_to_file(pha_dir, out, workers=1, chunk_files=size, progress=False)
        assert_same_set(SpectrumSet.read_hdf5(out), whole)
    assert not [p for p in tmp_path.iterdir() if "spool" in p.name]  # spool removed


def test_rows_that_name_a_background_skip_the_spool(
    pha_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks whose PHA rows all name a background (so none can be a dropped pure
    background) go into the file as they arrive; from the first chunk with a row that names
    none on, and for HDF5 sets, arrays wait in the spool for the plan."""
    saved = []
    original = Spool._save
    monkeypatch.setattr(Spool, "_save", lambda sp, i, j, s: saved.append((i, j)) or
                        original(sp, i, j, s))  # fmt: skip
    # 34 files in chunks of 7; the MMU file is in chunk 4 (zzz_sky.pha, a pure
    # background, is no row: it is read as a source and fails)
    ingest_to_file(pha_dir, tmp_path / "a.h5", workers=1, chunk_files=7, progress=False)
    assert saved == [(4, "0")]
    d = shutil.copytree(pha_dir, tmp_path / "pha")
    tenth = sorted(d.glob("sim-*[0-9].pha"))[9]  # file 10: chunk 1
    with fits.open(tenth) as hdul:
        hdul["SPECTRUM"].header["BACKFILE"] = "none"
        hdul.writeto(tenth, overwrite=True)
    saved.clear()
    out = tmp_path / "b.h5"
    ingest_to_file(d, out, workers=1, chunk_files=7, progress=False)
    assert saved == [(1, "r"), (2, "r"), (3, "r"), (4, "r"), (4, "0")]
    got = SpectrumSet.read_hdf5(out)
    assert got.meta["bkg_file"][got.meta["source_file"] == str(tenth)].tolist() == [""]
    assert_same_set(got, written(ingest_paths(d, progress=False).spectrum_set, tmp_path / "m.h5"))


def test_finish_sets_meta_before_writing_and_may_not_drop_rows(
    pha_dir: Path, tmp_path: Path
) -> None:
    def tag(s: SpectrumSet) -> SpectrumSet:
        s.meta["tag"] = np.arange(len(s))
        s.add_provenance("tag")
        return s

    out = tmp_path / "tagged.h5"
    ingest_to_file(pha_dir, out, workers=1, chunk_files=4, progress=False, finish=tag)
    s = SpectrumSet.read_hdf5(out)
    assert s.meta["tag"].tolist() == list(range(len(s)))
    assert s.provenance[-1]["step"] == "tag"
    with pytest.raises(ValueError, match="not the rows"):
        ingest_to_file(pha_dir, tmp_path / "x.h5", workers=1, progress=False,
                       finish=lambda s: s[:3])  # fmt: skip
    assert not (tmp_path / "x.h5").exists()


def test_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "a.pha").write_bytes(b"junk")
    result = ingest_to_file(tmp_path, tmp_path / "out.h5", workers=2, progress=False)
    assert result.path is None and result.n_ingested == 0 and len(result.skipped) == 1
    assert not (tmp_path / "out.h5").exists()


def test_cli_workers_and_split(pha_dir: Path, tmp_path: Path) -> None:
    """`xlatent ingest --workers 2` on a few files (read in one process): the set of the
    Python API plus the split column."""
    out = tmp_path / "cli.h5"
    r = CliRunner().invoke(app, ["ingest", str(pha_dir), "--out", str(out), "--workers", "2"])
    assert r.exit_code == 0, r.output
    assert "ingested 31 spectra, skipped 2" in r.output
    got = SpectrumSet.read_hdf5(out)
    want = written(ingest_paths(pha_dir, progress=False).spectrum_set, tmp_path / "m.h5")
    assert set(got.meta["split"]) <= {"train", "test"}
    got.meta = got.meta.drop(columns="split")
    assert_same_set(got, want)
    bad = CliRunner().invoke(app, ["ingest", str(pha_dir), "--out", str(out), "--workers", "0"])
    assert bad.exit_code == 2


def test_response_paths_are_each_spectrum_own(real_spectra_dir: Path, tmp_path: Path) -> None:
    """Two detections whose ARF/RMF link to one shared file: each row names its own links
    (the response cache, keyed by the real file, once made every row name the first path
    read, so the meta depended on which process read what first)."""
    shared = tmp_path / "responses"
    shared.mkdir()
    for name in ("9774.arf", "9774.rmf"):
        shutil.copy(real_spectra_dir / name, shared / name)
    for d in ("det0", "det1"):
        (tmp_path / d).mkdir()
        for name in ("9774.pi", "9774_bg.pi"):
            shutil.copy(real_spectra_dir / name, tmp_path / d / name)
        for name in ("9774.arf", "9774.rmf"):
            (tmp_path / d / name).symlink_to(shared / name)
    meta = ingest_paths([tmp_path / "det0", tmp_path / "det1"], progress=False).spectrum_set.meta
    for i, d in enumerate(("det0", "det1")):
        assert meta["arf_file"][i] == str(tmp_path / d / "9774.arf")
        assert meta["rmf_file"][i] == str(tmp_path / d / "9774.rmf")


@pytest.mark.parametrize("min_parallel", [0, 10_000])
def test_workers_start_while_the_files_are_found(
    pha_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_parallel: int
) -> None:
    """ingest_to_file starts its local workers before discovery (they are up for the first
    chunks); with too few files it reads them here and stops the workers without waiting for
    their start. The file is the serial one either way."""
    import xlatent.io.ingest as ingest_mod

    events: list[str] = []

    class Recorded(ingest_mod.Pool):
        def __init__(self, *args: object, **kwargs: object) -> None:
            events.append("pool")
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

        def close(self, abort: bool = False) -> None:
            events.append(f"close abort={abort}")
            super().close(abort)

    real_discover = ingest_mod._discover

    def discover(*args: object) -> object:
        events.append("discover")
        return real_discover(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_mod, "Pool", Recorded)
    monkeypatch.setattr(ingest_mod, "_discover", discover)
    opts = {"chunk_files": 7, "min_parallel": min_parallel, "progress": False}
    ingest_to_file(pha_dir, tmp_path / "two.h5", workers=2, **opts)
    assert events[:2] == ["pool", "discover"]
    assert events[2] == ("close abort=True" if min_parallel else "close abort=False")
    ingest_to_file(pha_dir, tmp_path / "one.h5", workers=1, **opts)
    assert events.count("pool") == 1  # one worker: none started
    assert_same_set(SpectrumSet.read_hdf5(tmp_path / "one.h5"),
                    SpectrumSet.read_hdf5(tmp_path / "two.h5"))  # fmt: skip
