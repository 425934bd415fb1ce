"""Hostile and damaged input (issue 10): no code runs, nothing hangs, nothing crashes, nothing
wrong is accepted. Every hostile file is built here, in tmp_path, at test time.

Each batch test ingests one good real spectrum next to one hostile item and checks that the good
spectrum is kept, the hostile one is skipped with a reason naming it, and no exception escapes.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.io import fastfits, mmu
from xlatent.io.fastfits import FitsFormatError, iter_extensions, read_bytes
from xlatent.io.grid_mapper import GridMapper
from xlatent.io.ingest import discover, ingest_paths
from xlatent.io.ogip_response import ResponseCache
from xlatent.io.pha import load_pha_spectrum
from xlatent.io.registry import identify_format

STEM = "acisf00308_000N001_r0044"
GOOD_ID = "308_000_0044"


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def data_dir(real_spectra_dir: Path, tmp_path: Path) -> Path:
    """A folder with one good CSC spectrum (pha3, arf3, rmf3 copied from the real data)."""
    d = tmp_path / "data"
    d.mkdir()
    for kind in ("pha3", "arf3", "rmf3"):
        shutil.copy(real_spectra_dir / f"{STEM}_{kind}.fits", d / f"{STEM}_{kind}.fits")
    return d


def good_pha(d: Path) -> Path:
    return d / f"{STEM}_pha3.fits"


def batch(*items: str | Path, **kw):
    return ingest_paths(list(items), progress=False, cache=ResponseCache(), **kw)


def assert_good_kept_bad_skipped(result, bad: Path | str, reason: str) -> None:
    assert result.spectrum_set is not None, result.summary()
    assert list(result.spectrum_set.meta["spec_id"]) == [GOOD_ID], result.summary()
    reasons = {Path(p).name: why for p, why in result.skipped}
    name = Path(bad).name
    assert name in reasons, result.summary()
    assert reason.lower() in reasons[name].lower(), reasons[name]
    assert "\n" not in reasons[name]


def edited_copy(d: Path, name: str, edit: Callable[[fits.HDUList], None]) -> Path:
    """A copy of the good spectrum (its background in its own BKG HDU) after ``edit``."""
    dst = d / name
    with fits.open(good_pha(d)) as h:
        h[1].header["BACKFILE"] = name
        edit(h)
        h.writeto(dst, overwrite=True)
    return dst


def set_card(raw: bytes, extension: int, key: str, value: str) -> bytes:
    """``raw`` with the ``key`` card of extension number ``extension`` (1 = first) replaced."""
    pos = 0
    for _ in range(extension):
        pos = raw.index(b"XTENSION", pos + 1)
    start = pos
    while raw[start : start + 8].decode().strip() != key:
        start += 80
        assert raw[start : start + 3] != b"END", key
    card = f"{key:<8}= {value:>20}".ljust(80).encode()
    return raw[:start] + card + raw[start + 80 :]


def with_counts(values: np.ndarray, hdu: int = 1) -> Callable[[fits.HDUList], None]:
    """Replace a spectrum's COUNTS by a float column holding ``values`` (1024 channels)."""

    def edit(h: fits.HDUList) -> None:
        old = h[hdu]
        header = old.header.copy()
        for k in [k for k in header if k.startswith(("TTYPE", "TFORM", "TUNIT", "TLM", "TDISP"))]:
            del header[k]
        cols = [
            fits.Column("CHANNEL", "J", array=old.data["CHANNEL"]),
            fits.Column("COUNTS", "D", array=values),
        ]
        h[hdu] = fits.BinTableHDU.from_columns(cols, header=header, name="SPECTRUM")

    return edit


def with_header(key: str, value, hdu: int = 1) -> Callable[[fits.HDUList], None]:
    def edit(h: fits.HDUList) -> None:
        h[hdu].header[key] = value

    return edit


# ------------------------------------------------------------------ damaged FITS bytes
@pytest.mark.timeout(120)
def test_truncated_at_many_offsets_batch_keeps_the_good_one(data_dir: Path) -> None:
    raw = good_pha(data_dir).read_bytes()
    offsets = sorted({0, 1, 8, 80, 2879, 2880, 2881, 5760, 8000, len(raw) // 2,
                      len(raw) - 2881, len(raw) - 2880, len(raw) - 2000})  # fmt: skip
    bad = []
    for k in offsets:
        p = data_dir / f"trunc{k:06d}.pha"
        p.write_bytes(raw[:k])
        bad.append(p)
    t0 = time.perf_counter()
    result = batch(data_dir)
    assert time.perf_counter() - t0 < 60
    assert list(result.spectrum_set.meta["spec_id"]) == [GOOD_ID], result.summary()
    skipped = {Path(p).name: why for p, why in result.skipped}
    assert sorted(skipped) == sorted(p.name for p in bad)
    assert all(why and "\n" not in why for why in skipped.values())


def test_truncated_padding_only_reads_the_same(data_dir: Path) -> None:
    """Losing the zero padding after the last table loses no data: the file reads the same."""
    raw = good_pha(data_dir).read_bytes()
    assert raw[-100:] == bytes(100)
    short = data_dir / "short_pha3.fits"
    short.write_bytes(raw[:-100])
    np.testing.assert_array_equal(_load(short).counts, _load(good_pha(data_dir)).counts)


HEADER_CASES = [
    # (extension, key, value, reason)
    (1, "NAXIS", "1", "NAXIS"),  # NAXIS = 1 with a garbage NAXIS2 below
    (1, "NAXIS2", "'garbage'", "NAXIS2"),
    (1, "NAXIS2", "-5", "NAXIS2 = -5"),
    (1, "NAXIS2", "99999999999999999999", "data bytes"),
    (1, "NAXIS2", "1.5E3", "not an integer"),
    (1, "NAXIS1", "7", "NAXIS1"),
    (1, "TFIELDS", "3E7", "TFIELDS"),
    (1, "TFIELDS", "30000000", "TFIELDS = 30000000"),
    (1, "TFIELDS", "-1", "TFIELDS"),
    (1, "PCOUNT", "-1", "PCOUNT"),
    (1, "PCOUNT", "900000000000", "data bytes"),
    (1, "BITPIX", "7", "BITPIX"),
    (1, "NAXIS", "1000", "NAXIS"),
    (2, "NAXIS2", "123456789", "data bytes"),  # the GTI extension
    (3, "TFIELDS", "3E7", "TFIELDS"),  # the BKG spectrum
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("ext", "key", "value", "reason"), HEADER_CASES)
def test_bad_header_cards_are_refused_fast(data_dir, ext, key, value, reason) -> None:
    raw = set_card(good_pha(data_dir).read_bytes(), ext, key, value)
    if (key, value) == ("NAXIS", "1"):
        raw = set_card(raw, ext, "NAXIS2", "'x&%$'")
    bad = data_dir / "badcard.pha"
    bad.write_bytes(raw)
    t0 = time.perf_counter()
    result = batch(data_dir)
    assert time.perf_counter() - t0 < 10
    assert_good_kept_bad_skipped(result, bad, reason)


# ----------------------------------------------------------------------------- values
N = 1024


def _counts_with(value: float) -> np.ndarray:
    c = np.ones(N)
    c[100] = value
    return c


VALUE_CASES = {
    "counts_1e308": (with_counts(_counts_with(1e308)), "counts of 1e+308"),
    "counts_inf": (with_counts(_counts_with(np.inf)), "not finite"),
    "counts_nan": (with_counts(_counts_with(np.nan)), "not finite"),
    "counts_negative": (with_counts(_counts_with(-3.0)), "negative"),
    "counts_2e9": (with_counts(_counts_with(2e9)), "in one channel"),
    "bkg_counts_nan": (with_counts(_counts_with(np.nan), hdu=3), "not finite"),
    "backscal_0": (with_header("BACKSCAL", 0.0), "BACKSCAL is 0.0"),
    "backscal_negative": (with_header("BACKSCAL", -1.0), "BACKSCAL"),
    "bkg_backscal_0": (with_header("BACKSCAL", 0.0, hdu=3), "BACKSCAL is 0.0"),
    "areascal_0": (with_header("AREASCAL", 0.0), "AREASCAL"),
    "exposure_0": (with_header("EXPOSURE", 0.0), "EXPOSURE"),
    "exposure_1e300": (with_header("EXPOSURE", 1e300), "EXPOSURE"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(VALUE_CASES))
def test_bad_values_are_skipped_with_the_reason(data_dir: Path, case: str) -> None:
    edit, reason = VALUE_CASES[case]
    bad = edited_copy(data_dir, f"{case}_pha3.fits", edit)
    assert_good_kept_bad_skipped(batch(data_dir), bad, reason)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("key", "text"), [("BACKSCAL", "NaN"), ("EXPOSURE", "inf"), ("AREASCAL", "-0.0")]
)
def test_non_finite_keywords_written_as_text(data_dir: Path, key: str, text: str) -> None:
    raw = set_card(good_pha(data_dir).read_bytes(), 1, key, text)
    bad = data_dir / f"{key.lower()}_pha3.fits"
    bad.write_bytes(raw)
    assert_good_kept_bad_skipped(batch(data_dir), bad, key)


def _arf_edit(specresp: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def make(d: Path, name: str) -> Path:
        dst = d / f"{name}_arf.fits"
        with fits.open(d / f"{STEM}_arf3.fits") as h:
            data = h["SPECRESP"].data
            mid = 0.5 * (data["ENERG_LO"] + data["ENERG_HI"])
            data["SPECRESP"] = specresp(np.array(data["SPECRESP"]), mid)
            h.writeto(dst)
        return dst

    return make


ARF_CASES = {
    "zero": (_arf_edit(lambda a, e: a * 0), "zero everywhere"),
    "negative": (_arf_edit(lambda a, e: -a), "negative"),
    "one_negative": (_arf_edit(lambda a, e: np.where(np.abs(e - 2) < 0.05, -1.0, a)), "negative"),
    "nan": (_arf_edit(lambda a, e: np.where(np.abs(e - 2) < 0.05, np.nan, a)), "NaN"),
    "zero_2_3kev": (_arf_edit(lambda a, e: np.where((e > 2) & (e < 3), 0.0, a)), "zero or neg"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(ARF_CASES))
def test_bad_arf_skips_the_spectrum_that_uses_it(data_dir: Path, case: str) -> None:
    make, reason = ARF_CASES[case]
    arf = make(data_dir, case)
    bad = edited_copy(data_dir, f"arf_{case}_pha3.fits", with_header("ANCRFILE", arf.name))
    result = batch(data_dir)
    assert_good_kept_bad_skipped(result, bad, reason)
    assert arf.name in dict(result.skipped)[str(bad)]


def _rmf_edit(edit: Callable[[fits.HDUList], None]):
    def make(d: Path, name: str) -> Path:
        dst = d / f"{name}_rmf.fits"
        with fits.open(d / f"{STEM}_rmf3.fits") as h:
            edit(h)
            h.writeto(dst)
        return dst

    return make


def _matrix_value(value: float):
    """Patch one MATRIX element in the heap bytes (astropy rewrites VLA heaps on write)."""

    def make(d: Path, name: str) -> Path:
        raw = bytearray((d / f"{STEM}_rmf3.fits").read_bytes())
        header, start, main = next(fastfits._walk(bytes(raw)))  # RSP_MATRIX comes first
        assert header["TTYPE6"] == "MATRIX"
        col = sum(fastfits._field_bytes(header[f"TFORM{i}"]) for i in range(1, 6))
        desc = start + 500 * header["NAXIS1"] + col
        count, offset = struct.unpack(">ii", raw[desc : desc + 8])
        assert count > 0
        pos = start + main + offset
        raw[pos : pos + 4] = struct.pack(">f", value)
        dst = d / f"{name}_rmf.fits"
        dst.write_bytes(bytes(raw))
        return dst

    return make


def _reverse_ebounds(h: fits.HDUList) -> None:
    e = h["EBOUNDS"].data
    e["E_MIN"], e["E_MAX"] = e["E_MIN"][::-1].copy(), e["E_MAX"][::-1].copy()


RMF_CASES = {
    "matrix_nan": (_matrix_value(np.nan), "MATRIX has NaN"),
    "matrix_negative": (_matrix_value(-0.5), "negative"),
    "ebounds_reversed": (_rmf_edit(_reverse_ebounds), "EBOUNDS are not increasing"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(RMF_CASES))
def test_bad_rmf_skips_the_spectrum_that_uses_it(data_dir: Path, case: str) -> None:
    make, reason = RMF_CASES[case]
    rmf = make(data_dir, case)
    bad = edited_copy(data_dir, f"rmf_{case}_pha3.fits", with_header("RESPFILE", rmf.name))
    assert_good_kept_bad_skipped(batch(data_dir), bad, reason)


# ---------------------------------------------------------------------- special files
@pytest.mark.timeout(30)
@pytest.mark.parametrize("explicit", [False, True])
def test_fifo_named_like_a_spectrum_never_blocks(data_dir: Path, explicit: bool) -> None:
    fifo = data_dir / "x.pi"
    os.mkfifo(fifo)
    result = batch(*([good_pha(data_dir), fifo] if explicit else [data_dir]))
    assert_good_kept_bad_skipped(result, fifo, "FIFO")


@pytest.mark.timeout(30)
def test_fifo_named_like_hdf5_or_response_never_blocks(data_dir: Path) -> None:
    os.mkfifo(data_dir / "y.h5")
    os.mkfifo(data_dir / "fifo_rmf.fits")
    bad = edited_copy(data_dir, "usesfifo_pha3.fits", with_header("RESPFILE", "fifo_rmf.fits"))
    result = batch(data_dir)
    assert result.n_ingested == 1
    reasons = {Path(p).name: why for p, why in result.skipped}
    assert "FIFO" in reasons["y.h5"]
    assert "RMF" in reasons[bad.name]
    with pytest.raises(InputError, match="FIFO"):
        mmu.read(data_dir / "y.h5")
    with pytest.raises(InputError, match="FIFO"):
        identify_format(data_dir / "y.h5")


@pytest.mark.timeout(30)
def test_socket_and_device_are_skipped(data_dir: Path) -> None:
    sock_path = data_dir / "s.pha"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        (data_dir / "null.pi").symlink_to("/dev/null")
        result = batch(data_dir)
    finally:
        sock.close()
    assert_good_kept_bad_skipped(result, sock_path, "socket")
    assert "character device" in dict(result.skipped)[str(data_dir / "null.pi")]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("explicit", [False, True])
def test_symlink_loop_and_dangling_symlink(data_dir: Path, explicit: bool) -> None:
    loop = data_dir / "loop.pi"
    loop.symlink_to("loop.pi")
    ab, ba = data_dir / "a.pha", data_dir / "b.pha"
    ab.symlink_to("b.pha")
    ba.symlink_to("a.pha")
    dangling = data_dir / "gone.pi"
    dangling.symlink_to(data_dir / "never_existed.pi")
    items = [good_pha(data_dir), loop, ab, dangling] if explicit else [data_dir]
    result = batch(*items)
    assert_good_kept_bad_skipped(result, loop, "symlink loop")
    assert_good_kept_bad_skipped(result, ab, "symlink loop")
    assert_good_kept_bad_skipped(result, dangling, "dangling symlink")


@pytest.mark.timeout(30)
def test_directory_symlink_loops_are_walked_once(data_dir: Path) -> None:
    sub = data_dir / "sub" / "deeper"
    sub.mkdir(parents=True)
    (sub / "up").symlink_to(data_dir, target_is_directory=True)
    (data_dir / "self").symlink_to(".", target_is_directory=True)
    (sub / "side").symlink_to(data_dir / "sub", target_is_directory=True)
    files, missing = discover([data_dir])
    assert [f.name for f in files] == [good_pha(data_dir).name]
    result = batch(data_dir, f"{data_dir}/**/*.fits")
    assert list(result.spectrum_set.meta["spec_id"]) == [GOOD_ID]


@pytest.mark.timeout(30)
def test_symlinked_data_directory_is_followed(data_dir: Path, tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "linked").symlink_to(data_dir, target_is_directory=True)
    assert batch(outer).n_ingested == 1


# ------------------------------------------------------------------- HDF5 inputs
@pytest.mark.timeout(60)
def test_reingest_into_the_scanned_folder_three_times(data_dir: Path) -> None:
    out = data_dir / "set.h5"
    for _ in range(3):
        result = batch(data_dir)
        assert result.n_ingested == 1 and result.skipped == [], result.summary()
        result.spectrum_set.write(out)
    for _ in range(3):  # and with the output excluded explicitly, even when named
        result = batch(data_dir, out, exclude=out)
        assert result.n_ingested == 1 and result.skipped == [], result.summary()
        result.spectrum_set.write(out)
    assert len(SpectrumSet.read(out)) == 1


@pytest.mark.timeout(60)
def test_spectrum_set_is_read_only_when_named(data_dir: Path, tmp_path: Path) -> None:
    out = data_dir / "set.h5"
    batch(data_dir).spectrum_set.write(out)
    files, _ = discover([data_dir])
    assert out not in files
    result = batch(data_dir, out)
    assert result.n_ingested == 2 and result.skipped == []
    assert list(result.spectrum_set.meta["spec_id"]) == [GOOD_ID, f"{GOOD_ID}_1"]
    # excluded by another spelling of the same path
    assert batch(out, exclude=[str(data_dir / "." / "set.h5")]).spectrum_set is None


@pytest.mark.timeout(60)
def test_damaged_hdf5_files_are_skipped_not_keyerror(data_dir: Path, mmu_file) -> None:  # noqa: ANN001
    junk = data_dir / "junk.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(3000))
    hollow = data_dir / "hollow.h5"  # claims to be a SpectrumSet, has no datasets
    with h5py.File(hollow, "w") as f:
        f.attrs["format"] = "xlatent.SpectrumSet"
        f.attrs["schema_version"] = 1
    half_mmu = data_dir / "half_mmu.hdf5"  # MMU keys, but no errors and flux of wrong shape
    with h5py.File(half_mmu, "w") as f:
        f["spectrum_flux"] = np.ones((2, 3))
        f["spectrum_ene_lo"] = np.ones(5)
    nan_mmu = mmu_file(data_dir / "nan_mmu.hdf5", flux_value=np.nan)
    good_mmu = mmu_file(data_dir / "good_mmu.hdf5")
    truncated = data_dir / "trunc_mmu.hdf5"
    truncated.write_bytes(good_mmu.read_bytes()[:1500])
    items = [good_pha(data_dir), junk, hollow, half_mmu, nan_mmu, truncated]
    result = batch(*items)
    assert list(result.spectrum_set.meta["spec_id"]) == [GOOD_ID], result.summary()
    reasons = {Path(p).name: why for p, why in result.skipped}
    assert sorted(reasons) == sorted(p.name for p in items[1:])
    assert "damaged HDF5" in reasons["junk.h5"]
    assert "not finite" in reasons["nan_mmu.hdf5"]
    for bad in items[1:]:
        with pytest.raises(InputError):
            mmu.read(bad)
    # From a directory scan the damaged ones are reported, the good MMU file is taken,
    # and the hollow "SpectrumSet" (a valid HDF5 file that is no MMU file) is left alone.
    scan = batch(data_dir)
    assert scan.n_ingested == 2, scan.summary()
    assert "hollow.h5" not in {Path(p).name for p, _ in scan.skipped}


# ------------------------------------------------------------------------ resources
def _gzip_zeros(path: Path, n_bytes: int, head: bytes = b"") -> Path:
    """A gzip file inflating to ``head`` + zeros, written in chunks (never all in memory)."""
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(head)
        chunk = bytes(2**20)
        for _ in range(n_bytes // len(chunk)):
            fh.write(chunk)
    return path


@pytest.mark.timeout(60)
def test_gzip_bomb_is_refused_with_bounded_memory(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(fastfits, "MAX_BYTES", 8 * 2**20)
    head = good_pha(data_dir).read_bytes()[:2880]  # a real FITS start, then 64 MB of zeros
    bomb = _gzip_zeros(data_dir / "bomb_pha3.fits.gz", 64 * 2**20, head)
    assert bomb.stat().st_size < 200_000
    tracemalloc.start()
    try:
        result = batch(data_dir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_good_kept_bad_skipped(result, bomb, "inflate to more than the 8 MB limit")
    assert peak < 40 * 2**20, peak  # the cap plus working memory, never the 64 MB


@pytest.mark.timeout(60)
def test_gzip_bomb_as_an_arf(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(fastfits, "MAX_BYTES", 4 * 2**20)
    _gzip_zeros(data_dir / "bomb_arf.fits.gz", 16 * 2**20, b"SIMPLE  =")
    bad = edited_copy(data_dir, "bombarf_pha3.fits", with_header("ANCRFILE", "bomb_arf.fits.gz"))
    assert_good_kept_bad_skipped(batch(data_dir), bad, "inflate")


@pytest.mark.timeout(30)
def test_size_cap_applies_to_plain_files_too(data_dir: Path, monkeypatch) -> None:
    size = good_pha(data_dir).stat().st_size
    monkeypatch.setattr(fastfits, "MAX_BYTES", size - 1)
    with pytest.raises(FitsFormatError, match="over the"):
        read_bytes(good_pha(data_dir))
    monkeypatch.setattr(fastfits, "MAX_BYTES", size)
    assert read_bytes(good_pha(data_dir)) == good_pha(data_dir).read_bytes()


def test_gzip_reader_matches_gzip_for_members_and_trailing_zeros(tmp_path: Path) -> None:
    payload = os.urandom(3 * 2**20 + 17)
    p = tmp_path / "m.gz"
    p.write_bytes(gzip.compress(payload[:1000]) + gzip.compress(payload[1000:]) + bytes(64))
    assert read_bytes(p) == payload
    p.write_bytes(gzip.compress(payload)[:-100])
    with pytest.raises(FitsFormatError, match="truncated"):
        read_bytes(p)
    p.write_bytes(b"\x1f\x8b" + os.urandom(500))
    with pytest.raises(FitsFormatError, match="gzip"):
        read_bytes(p)
    p.write_bytes(zlib.compress(payload))  # zlib, not gzip: read as it is
    assert read_bytes(p) == p.read_bytes()


@pytest.mark.timeout(30)
def test_every_other_exception_type_becomes_one_skip(data_dir: Path, monkeypatch) -> None:
    import xlatent.io.pha as pha_module

    real = pha_module.load_pha_spectrum

    def flaky(path, mapper):  # noqa: ANN001, ANN202
        if Path(path).name.startswith("boom"):
            raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'int'")
        return real(path, mapper)

    monkeypatch.setattr(pha_module, "load_pha_spectrum", flaky)
    boom = shutil.copy(good_pha(data_dir), data_dir / "boom.pha")
    assert_good_kept_bad_skipped(batch(data_dir), boom, "unreadable (TypeError: unsupported")


def test_missing_explicit_names_and_globs_are_reported(data_dir: Path) -> None:
    result = batch(good_pha(data_dir), data_dir / "nope.pi", str(data_dir / "*.nothing"))
    assert result.n_ingested == 1
    assert len(result.skipped) == 2
    assert all("no such file" in why for _, why in result.skipped)


# ------------------------------------------------------------------------------ fuzzing
def _load(path: Path):
    return load_pha_spectrum(path, GridMapper(EnergyGrid.default(), ResponseCache()))


@pytest.mark.timeout(120)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_pha3_is_valid_or_input_error(real_spectra_dir: Path, tmp_path_factory, data):
    d = tmp_path_factory.mktemp("fuzz")
    for kind in ("arf3", "rmf3"):
        (d / f"{STEM}_{kind}.fits").symlink_to(real_spectra_dir / f"{STEM}_{kind}.fits")
    raw = bytearray((real_spectra_dir / f"{STEM}_pha3.fits").read_bytes())
    # Headers are where a flip does damage worth finding: bias positions towards them.
    header_end = 4 * 2880
    for _ in range(data.draw(st.integers(1, 12))):
        pos = data.draw(st.integers(0, header_end) | st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from([0x00, 0x20, 0x27, 0x2D, 0x39, 0x45, 0xFF]))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw))) :]
    pha = d / f"{STEM}_pha3.fits"
    pha.write_bytes(bytes(raw))
    try:
        row = _load(pha)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert np.all(np.isfinite(row.counts)) and np.all(row.counts >= 0)
        assert np.all(np.isfinite(row.background)) and np.all(row.background >= 0)
        assert np.isfinite(row.exposure_s) and row.exposure_s > 0


@pytest.mark.timeout(120)
@settings(max_examples=150, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, 4 * 2880 - 1), st.binary(min_size=1, max_size=4))),
    cut=st.integers(0, 5 * 2880),
)
def test_fuzzed_headers_raise_only_fits_format_error(real_spectra_dir: Path, flips, cut) -> None:
    raw = bytearray((real_spectra_dir / f"{STEM}_pha3.fits").read_bytes())
    for pos, b in flips:
        raw[pos : pos + len(b)] = b
    raw = bytes(raw[: len(raw) - cut])
    try:
        for hdu in iter_extensions(raw):
            for name in hdu.names[:8]:
                try:
                    hdu.column(name)
                except KeyError:
                    pass
    except FitsFormatError:
        pass
