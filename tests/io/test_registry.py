"""The I/O registry: one table of input formats, one reader per format, one entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xlatent
from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.io import mmu, pha, registry, spectrumset_hdf5
from xlatent.io.ingest import read_spectra

PHA = "acisf00308_000N001_r0044_pha3.fits"


def _set_file(path: Path, grid: EnergyGrid) -> Path:
    n = 2
    SpectrumSet(
        grid=grid,
        counts=np.ones((n, grid.n_bins)),
        background=np.zeros((n, grid.n_bins)),
        exposure_s=np.full(n, 1e4),
        effective_area_cm2=np.full((n, grid.n_bins), 100.0),
        meta=None,
    ).write(path)
    return path


def test_one_table_lists_every_format_in_the_order_tried() -> None:
    assert [f.name for f in registry.FORMATS] == ["pha", "spectrumset", "mmu"]
    for fmt, module in zip(registry.FORMATS, (pha, spectrumset_hdf5, mmu), strict=True):
        assert (fmt.identify, fmt.read) == (module.identify, module.read)
    with pytest.raises(ValueError, match="unknown format 'fits'; known formats: pha, spectrumset"):
        registry.get_format("fits")


def test_identify_format(real_spectra_dir: Path, tmp_path: Path, mmu_file) -> None:
    assert registry.identify_format(real_spectra_dir / PHA) == "pha"
    assert registry.identify_format(mmu_file(tmp_path / "m.h5")) == "mmu"
    assert registry.identify_format(_set_file(tmp_path / "s.h5", EnergyGrid.default())) == (
        "spectrumset"
    )
    (tmp_path / "x.txt").write_text("hello")
    assert registry.identify_format(tmp_path / "x.txt") == "unknown"
    with pytest.raises(InputError, match="no such file"):
        registry.identify_format(tmp_path / "absent.pi")


def test_read_one_file_matches_the_batch(real_spectra_dir: Path, tmp_path: Path, mmu_file) -> None:
    one = registry.read(real_spectra_dir / PHA)
    batch = read_spectra(real_spectra_dir / PHA, progress=False)
    np.testing.assert_array_equal(one.counts, batch.counts)
    np.testing.assert_array_equal(one.effective_area_cm2, batch.effective_area_cm2)
    assert list(one.meta["spec_id"]) == list(batch.meta["spec_id"]) == ["308_000_0044"]
    m = registry.read(mmu_file(tmp_path / "m.h5"), format="mmu")
    np.testing.assert_array_equal(m.counts, mmu.read(tmp_path / "m.h5").counts)


def test_spectrum_set_keeps_its_grid_unless_one_is_asked(tmp_path: Path) -> None:
    grid = EnergyGrid.log(0.5, 7.0, 32)
    path = _set_file(tmp_path / "s.h5", grid)
    assert registry.read(path).grid == grid
    with pytest.raises(InputError, match="SpectrumSet on another grid"):
        registry.read(path, grid=EnergyGrid.default())
    (tmp_path / "x.pi").write_bytes(b"hello")
    with pytest.raises(InputError, match="neither a FITS PHA spectrum nor a known HDF5 layout"):
        registry.read(tmp_path / "x.pi")


def test_one_public_reading_function() -> None:
    assert xlatent.read_spectra is read_spectra
    assert not hasattr(xlatent, "ingest")


def test_instrument_imports_neither_io_nor_physics() -> None:
    code = (
        "import sys, xlatent.instrument; "
        "print(sorted(m for m in sys.modules if m.startswith(('xlatent.io', 'xlatent.physics'))))"
    )
    src = str(Path(xlatent.__file__).resolve().parents[1])  # this checkout's xlatent
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


def test_spectrumset_read_reaches_every_format(
    tmp_path: Path, real_spectra_dir: Path, mmu_file
) -> None:
    """SpectrumSet.read: its own layout directly, a Multimodal Universe HDF5 file (no
    SpectrumSet format attribute) and a PHA file through this registry."""
    via_core = SpectrumSet.read(mmu_file(tmp_path / "mmu.h5"))
    assert np.array_equal(via_core.counts, mmu.read(tmp_path / "mmu.h5").counts)
    assert via_core.counts.sum() == pytest.approx(290, rel=0.02)  # 29 bins x 10 counts
    with pytest.raises(InputError, match="not an xlatent SpectrumSet"):
        SpectrumSet.read(tmp_path / "mmu.h5", format="spectrumset")
    assert len(SpectrumSet.read(real_spectra_dir / PHA)) == 1


@pytest.mark.parametrize(
    "name",
    [
        "acisf01575_001N001_r0085_pha3.fits.gz",
        "acisf01575_001N022_e1_r0085_pha3.fits",  # interleaved mode: exposure cycle 1
        "acisf01575_001N021_e2_r0085_rmf3.fits",
    ],
)
def test_csc_file_names_with_and_without_a_cycle_name_the_detection(name: str) -> None:
    assert pha.parse_csc_name(name) == {"obsid": 1575, "obi": 1, "region_id": 85}
