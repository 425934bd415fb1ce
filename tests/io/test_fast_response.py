"""The byte-level RMF and ARF readers give exactly what the astropy readers give, or step
aside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from astropy.io import fits

import xlatent.io.ogip_response as ogip
from xlatent.core import InputError
from xlatent.instrument import RMF, default_response
from xlatent.io.fast_response import arf_arrays, rmf_arrays
from xlatent.io.fastfits import read_bytes
from xlatent.io.ogip_write import write_rmf

REAL_RMFS = ("acisf00308_000N001_r0044_rmf3.fits", "acisf01878_000N001_r0100_rmf3.fits",
             "acisf01575_001N001_r0085_rmf3.fits.gz", "9774.rmf")  # fmt: skip


def read_both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[RMF, RMF]:
    """(byte-level, astropy) readings of ``path``; the first must not have stepped aside."""
    assert rmf_arrays(read_bytes(path), ogip.RMF_MATRIX_EXTNAMES) is not None
    fast = ogip.read_rmf(path, cache=None)
    with monkeypatch.context() as m:
        m.setattr(ogip, "rmf_arrays", lambda *a: None)
        slow = ogip.read_rmf(path, cache=None)
    return fast, slow


def assert_identical(a: RMF, b: RMF) -> None:
    for name in ("energ_lo", "energ_hi", "e_min", "e_max"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.first_channel == b.first_channel
    for name in ("indptr", "indices", "data"):
        x, y = getattr(a.matrix, name), getattr(b.matrix, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", REAL_RMFS)
def test_real_rmfs_read_identically(real_spectra_dir: Path, name: str, monkeypatch) -> None:
    assert_identical(*read_both(real_spectra_dir / name, monkeypatch))


def test_written_rmf_with_gaps_and_empty_rows_reads_identically(tmp_path: Path, monkeypatch):
    ref = default_response().rmf
    m = ref.matrix.tolil()
    m[5, :] = 0  # an empty row: N_GRP 0
    m[200, 60:64] = 0  # a row of two groups
    rmf = RMF(ref.energ_lo, ref.energ_hi, m.tocsr(), ref.e_min, ref.e_max, 1, "")
    path = write_rmf(tmp_path / "gappy.rmf", rmf, extname="RSP_MATRIX")
    fast, slow = read_both(path, monkeypatch)
    assert_identical(fast, slow)
    assert fast.matrix[5].nnz == 0


def write_small_rmf(path: Path, f_chan, n_chan, matrix, n_grp, formats) -> Path:  # noqa: ANN001
    """A 3-row, 8-channel RMF with the given column formats (fixed or variable)."""
    e = np.array([1.0, 2.0, 3.0, 4.0])
    cols = [fits.Column(name="ENERG_LO", format="E", array=e[:-1]),
            fits.Column(name="ENERG_HI", format="E", array=e[1:]),
            fits.Column(name="N_GRP", format="I", array=np.array(n_grp)),
            fits.Column(name="F_CHAN", format=formats[0], array=f_chan),
            fits.Column(name="N_CHAN", format=formats[1], array=n_chan),
            fits.Column(name="MATRIX", format=formats[2], array=matrix)]  # fmt: skip
    mat = fits.BinTableHDU.from_columns(cols, name="MATRIX")
    mat.header["TLMIN4"] = 0
    ch = np.arange(8)
    ebo = fits.BinTableHDU.from_columns(
        [fits.Column(name="CHANNEL", format="J", array=ch),
         fits.Column(name="E_MIN", format="E", array=0.5 + ch * 0.5),
         fits.Column(name="E_MAX", format="E", array=1.0 + ch * 0.5)], name="EBOUNDS")  # fmt: skip
    fits.HDUList([fits.PrimaryHDU(), mat, ebo]).writeto(path)
    return path


def test_fixed_width_columns_read_identically(tmp_path: Path, monkeypatch) -> None:
    # F_CHAN / N_CHAN with two slots, MATRIX 8 wide: the second row has two groups, the third
    # none; channels numbered from 0 (TLMIN4).
    f_chan = np.array([[1, 0], [0, 5], [0, 0]], dtype=np.int32)
    n_chan = np.array([[3, 0], [2, 3], [0, 0]], dtype=np.int32)
    matrix = np.zeros((3, 8), dtype=np.float32)
    matrix[0, :3] = [0.2, 0.5, 0.3]
    matrix[1, :5] = [0.1, 0.2, 0.3, 0.2, 0.2]
    path = write_small_rmf(tmp_path / "fixed.rmf", f_chan, n_chan, matrix, [1, 2, 0],
                           ("2J", "2J", "8E"))  # fmt: skip
    fast, slow = read_both(path, monkeypatch)
    assert_identical(fast, slow)
    expected = np.zeros((3, 8))
    expected[0, 1:4] = [0.2, 0.5, 0.3]
    expected[1, [0, 1, 5, 6, 7]] = [0.1, 0.2, 0.3, 0.2, 0.2]
    np.testing.assert_allclose(fast.matrix.toarray(), expected, rtol=1e-7)


def test_64_bit_descriptors_read_identically(tmp_path: Path, monkeypatch) -> None:
    # The first row stores a value past its one group (ignored by both readers), so its
    # values are gathered rather than sliced from the heap.
    obj = lambda rows, t: np.array([np.array(r, dtype=t) for r in rows], dtype=object)  # noqa: E731
    path = write_small_rmf(
        tmp_path / "q.rmf", obj([[2], [0, 6], []], np.int32), obj([[2], [1, 2], []], np.int32),
        obj([[0.4, 0.6, 9.0], [0.5, 0.25, 0.25], []], np.float32), [1, 2, 0],
        ("QJ", "QJ", "QE"),
    )  # fmt: skip
    fast, slow = read_both(path, monkeypatch)
    assert_identical(fast, slow)
    np.testing.assert_allclose(fast.matrix.toarray()[0], [0, 0, 0.4, 0.6, 0, 0, 0, 0], rtol=1e-7)


def test_a_row_that_does_not_fit_steps_aside_and_keeps_the_error(tmp_path: Path) -> None:
    f_chan = np.array([[1], [0], [0]], dtype=np.int32)
    n_chan = np.array([[3], [9], [0]], dtype=np.int32)  # 9 channels of 8
    matrix = np.full((3, 8), 0.1, dtype=np.float32)
    path = write_small_rmf(tmp_path / "bad.rmf", f_chan, n_chan, matrix, [1, 1, 0],
                           ("1J", "1J", "8E"))  # fmt: skip
    assert rmf_arrays(read_bytes(path), ogip.RMF_MATRIX_EXTNAMES) is None
    with pytest.raises(InputError, match=r"damaged RMF table .*N_CHAN"):
        ogip.read_rmf(path, cache=None)


def test_the_matrix_is_a_csr_matrix_with_sorted_indices(real_spectra_dir: Path) -> None:
    rmf = ogip.read_rmf(real_spectra_dir / REAL_RMFS[0], cache=None)
    assert sp.isspmatrix_csr(rmf.matrix) and rmf.matrix.has_sorted_indices


def test_rows_sharing_heap_bytes_step_aside(tmp_path: Path) -> None:
    # Legal FITS, but gathering them could outgrow the file many times: astropy reads it.
    import struct

    from xlatent.io import fastfits
    from xlatent.io.fast_response import variable_column

    path = write_rmf(tmp_path / "r.rmf", default_response().rmf)
    raw = bytearray(path.read_bytes())
    header, start, main = next(fastfits._walk(bytes(raw)))
    col = sum(fastfits._field_bytes(header[f"TFORM{i}"]) for i in range(1, 6))  # MATRIX
    widest = max(range(header["NAXIS2"]), key=lambda r: struct.unpack(
        ">i", raw[start + r * header["NAXIS1"] + col : start + r * header["NAXIS1"] + col + 4]
    )[0])  # fmt: skip
    at = start + widest * header["NAXIS1"] + col
    desc = bytes(raw[at : at + 8])
    for row in range(header["NAXIS2"]):  # every row points at the widest row's values
        at = start + row * header["NAXIS1"] + col
        raw[at : at + 8] = desc
    hdu = next(fastfits.iter_extensions(bytes(raw)))
    with pytest.raises(fastfits.FitsFormatError, match="overlap"):
        variable_column(hdu, "MATRIX")
    assert rmf_arrays(bytes(raw), ogip.RMF_MATRIX_EXTNAMES) is None


REAL_ARFS = ("acisf00308_000N001_r0044_arf3.fits", "acisf01878_000N001_r0100_arf3.fits",
             "acisf01575_001N001_r0085_arf3.fits.gz", "9774.arf")  # fmt: skip


@pytest.mark.parametrize("name", REAL_ARFS)
def test_real_arfs_read_identically(real_spectra_dir: Path, name: str, monkeypatch) -> None:
    path = real_spectra_dir / name
    assert arf_arrays(read_bytes(path)) is not None
    fast = ogip.read_arf(path, cache=None)
    with monkeypatch.context() as m:
        m.setattr(ogip, "arf_arrays", lambda *a: None)
        slow = ogip.read_arf(path, cache=None)
    for field in ("energ_lo", "energ_hi", "specresp"):
        x, y = getattr(fast, field), getattr(slow, field)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def test_an_arf_without_specresp_steps_aside_and_keeps_the_error(tmp_path: Path) -> None:
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="ENERG_LO", format="E", array=np.array([1.0]))], name="OTHER"
    )
    path = tmp_path / "x.arf"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    assert arf_arrays(read_bytes(path)) is None
    with pytest.raises(InputError, match="no SPECRESP"):
        ogip.read_arf(path, cache=None)


def test_a_first_channel_without_a_value_steps_aside(tmp_path: Path) -> None:
    # A TLMIN4 card with its value left blank: astropy's reader calls the table damaged, so
    # the byte-level reader must not fall back to EBOUNDS or channel 1 instead.
    raw = bytearray(write_rmf(tmp_path / "r.rmf", default_response().rmf).read_bytes())
    at = raw.index(b"TLMIN4  = ")
    raw[at + 10 : at + 80] = b" " * 70
    (tmp_path / "bad.rmf").write_bytes(bytes(raw))
    assert rmf_arrays(bytes(raw), ogip.RMF_MATRIX_EXTNAMES) is None
    with pytest.raises(InputError, match="damaged RMF table"):
        ogip.read_rmf(tmp_path / "bad.rmf", cache=None)
