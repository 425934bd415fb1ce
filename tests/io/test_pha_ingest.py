"""Real Chandra spectra from ../shared/data/real_spectra, and every bad-input case."""

import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlatent.core import EnergyGrid, InputError, SpectrumSet
from xlatent.instrument.folded_area import folded_area
from xlatent.io import mmu
from xlatent.io.grid_mapper import GridMapper
from xlatent.io.ingest import discover, ingest_paths
from xlatent.io.ogip_response import ResponseCache, read_arf, read_rmf
from xlatent.io.pha import load_pha_spectrum, parse_csc_name

CSC = {
    "1575": ("acisf01575_001N001_r0085", ".fits.gz", 855, 303, 37664.16),
    "308": ("acisf00308_000N001_r0044", ".fits", 490, 48, None),
    "1878": ("acisf01878_000N001_r0100", ".fits", 476, 189, 75457.85),
}


def load(path: Path, **kw):
    return load_pha_spectrum(path, GridMapper(EnergyGrid.default(), ResponseCache()), **kw)


def copy_set(src_dir: Path, stem: str, ext: str, dst: Path) -> Path:
    for kind in ("pha3", "arf3", "rmf3"):
        shutil.copy(src_dir / f"{stem}_{kind}{ext}", dst / f"{stem}_{kind}{ext}")
    return dst / f"{stem}_pha3{ext}"


@pytest.mark.parametrize("obsid", sorted(CSC))
def test_csc_spectra_counts_exposure_and_ids(real_spectra_dir: Path, obsid: str) -> None:
    stem, ext, n_src, n_bkg, exposure = CSC[obsid]
    row = load(real_spectra_dir / f"{stem}_pha3{ext}")
    assert row.meta["src_counts_total"] == n_src
    assert row.meta["bkg_counts_total"] == n_bkg
    if exposure is not None:
        assert row.exposure_s == pytest.approx(exposure, abs=0.01)
    assert row.meta["obsid"] == int(obsid)
    assert row.meta == row.meta | parse_csc_name(stem)


def test_grid_counts_equal_channel_counts_inside_the_grid(real_spectra_dir: Path) -> None:
    stem, ext, *_ = CSC["1575"]
    pha = real_spectra_dir / f"{stem}_pha3{ext}"
    row = load(pha)
    rmf = read_rmf(real_spectra_dir / f"{stem}_rmf3{ext}", cache=None)
    with fits.open(pha) as h:
        counts = np.asarray(h[1].data["COUNTS"], float)
    inside = (rmf.e_min >= 0.5) & (rmf.e_max <= 8.0)
    edge_lo = (rmf.e_min < 0.5) & (rmf.e_max > 0.5)
    edge_hi = (rmf.e_min < 8.0) & (rmf.e_max > 8.0)
    frac_lo = (rmf.e_max[edge_lo] - 0.5) / (rmf.e_max[edge_lo] - rmf.e_min[edge_lo])
    frac_hi = (8.0 - rmf.e_min[edge_hi]) / (rmf.e_max[edge_hi] - rmf.e_min[edge_hi])
    expected = (
        counts[inside].sum() + (counts[edge_lo] * frac_lo).sum() + (counts[edge_hi] * frac_hi).sum()
    )
    assert row.counts.sum() == pytest.approx(expected, rel=1e-10)
    assert 0 < row.counts.sum() <= 855


def test_background_scaled_by_backscal_ratio(real_spectra_dir: Path) -> None:
    row = load(real_spectra_dir / "acisf01878_000N001_r0100_pha3.fits")
    ratio = row.meta["backscal"] / row.meta["bkg_backscal"]  # equal exposures, AREASCAL 1
    with fits.open(real_spectra_dir / "acisf01878_000N001_r0100_pha3.fits") as h:
        bkg = [x for x in h if x.header.get("HDUCLAS2") == "BKG"][0]
        raw = np.asarray(bkg.data["COUNTS"], float)
    rmf = read_rmf(real_spectra_dir / "acisf01878_000N001_r0100_rmf3.fits")
    in_grid = (rmf.e_min >= 0.5) & (rmf.e_max <= 8.0)
    assert row.background.sum() == pytest.approx(raw[in_grid].sum() * ratio, rel=0.02)
    assert ratio == pytest.approx(1.7542400619519e-06 / 4.2100436985493e-05)


def test_separate_background_file_9774(real_spectra_dir: Path) -> None:
    row = load(real_spectra_dir / "9774.pi")
    assert row.meta["src_counts_total"] == 4424
    assert row.meta["bkg_file"].endswith("9774_bg.pi")
    assert row.background.sum() > 0


def test_all_four_real_spectra_ingest_in_one_call(real_spectra_dir: Path, tmp_path) -> None:
    result = ingest_paths([real_spectra_dir], progress=False)
    assert result.skipped == []
    s = result.spectrum_set
    assert len(s) == 4
    assert set(s.meta["spec_id"]) == {"9774", "308_000_0044", "1575_001_0085", "1878_000_0100"}
    assert np.all(s.effective_area_cm2.max(1) > 300)
    r = SpectrumSet.read(s.write(tmp_path / "real.h5"))
    np.testing.assert_allclose(r.counts, s.counts)
    assert np.isfinite(r.meta["hr_counts_hm"]).all()


def test_real_spectra_say_how_they_can_pile(real_spectra_dir: Path) -> None:
    """frame time from TIMEDEL (9774, a 3.14104 s frame) or from DTCOR (CSC files: the full
    3.241 s frame); off-axis angle from the source and pointing positions; the PSF core's
    share falls with it."""
    rows = {p: load(real_spectra_dir / p).meta for p in
            ("9774.pi", "acisf00308_000N001_r0044_pha3.fits",
             "acisf01878_000N001_r0100_pha3.fits")}  # fmt: skip
    m9774, m308, m1878 = rows.values()
    assert m9774["frame_time_s"] == 3.14104
    assert m308["frame_time_s"] == pytest.approx(3.24104, abs=1e-4)
    assert m308["theta_arcmin"] == pytest.approx(1.39, abs=0.01)
    assert m1878["theta_arcmin"] == pytest.approx(3.86, abs=0.01)
    assert 0.79 > m308["psf_core_fraction"] > m1878["psf_core_fraction"] > 0.1


def test_discover_skips_background_and_response_files(real_spectra_dir: Path) -> None:
    files, missing = discover([real_spectra_dir, "/definitely/not/here"])
    names = sorted(f.name for f in files)
    assert names == [
        "9774.pi",
        "acisf00308_000N001_r0044_pha3.fits",
        "acisf01575_001N001_r0085_pha3.fits.gz",
        "acisf01878_000N001_r0100_pha3.fits",
    ]
    assert missing and "no such file" in missing[0][1]


def test_response_cache_reads_each_file_once(real_spectra_dir: Path, tmp_path) -> None:
    stem, ext, *_ = CSC["308"]
    copy_set(real_spectra_dir, stem, ext, tmp_path)
    cache = ResponseCache()
    mapper = GridMapper(EnergyGrid.default(), cache)
    for _ in range(5):
        load_pha_spectrum(tmp_path / f"{stem}_pha3{ext}", mapper)
    assert cache.reads == 2


def test_header_names_without_gz_and_relative_paths(real_spectra_dir: Path, tmp_path) -> None:
    stem, ext, *_ = CSC["1575"]
    sub = tmp_path / "deep" / "dir"
    sub.mkdir(parents=True)
    copy_set(real_spectra_dir, stem, ext, sub)
    row = load(sub / f"{stem}_pha3{ext}")
    assert row.meta["rmf_file"].endswith("_rmf3.fits.gz")


# ------------------------------------------------------------------------------ bad input
def _edit_pha(src: Path, dst: Path, edit) -> Path:
    with fits.open(src) as h:
        edit(h)
        h.writeto(dst, overwrite=True)
    return dst


@pytest.fixture
def csc_copy(real_spectra_dir: Path, tmp_path: Path) -> Path:
    stem, ext, *_ = CSC["308"]
    return copy_set(real_spectra_dir, stem, ext, tmp_path)


def _header_edit(key, value):
    def edit(h):
        h[1].header[key] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_header_edit("INSTRUME", "HRC"), "HRC"),
        (_header_edit("HDUCLAS4", "TYPE:II"), "type II"),
        (_header_edit("EXPOSURE", 0.0), "EXPOSURE"),
        (_header_edit("EXPOSURE", -5.0), "EXPOSURE"),
        (_header_edit("RESPFILE", "missing_rmf.fits"), "RMF missing_rmf.fits"),
        (_header_edit("ANCRFILE", "missing_arf.fits"), "ARF missing_arf.fits"),
        (_header_edit("ANCRFILE", "none"), "no ARF"),
    ],
)
def test_bad_headers_give_one_line_errors(csc_copy: Path, edit, reason: str) -> None:
    bad = _edit_pha(csc_copy, csc_copy.with_name("bad_pha3.fits"), edit)
    with pytest.raises(InputError) as info:
        load(bad)
    msg = str(info.value)
    assert reason in msg and "bad_pha3.fits" in msg and "\n" not in msg


def test_channel_count_mismatch(csc_copy: Path) -> None:
    def edit(h):
        hdu = h[1]
        h[1] = fits.BinTableHDU(hdu.data[:512], header=hdu.header, name="SPECTRUM")

    bad = _edit_pha(csc_copy, csc_copy.with_name("short_pha3.fits"), edit)
    with pytest.raises(InputError, match="512 channels but the RMF"):
        load(bad)


def test_no_counts_in_range(csc_copy: Path) -> None:
    def edit(h):
        h[1].data["COUNTS"][:] = 0

    bad = _edit_pha(csc_copy, csc_copy.with_name("empty_pha3.fits"), edit)
    with pytest.raises(InputError, match="no counts in 0.5-8 keV"):
        load(bad)


def test_area_is_the_arf_folded_through_the_rmf(csc_copy: Path) -> None:
    arf = read_arf(csc_copy.with_name(csc_copy.name.replace("pha3", "arf3")), cache=None)
    rmf = read_rmf(csc_copy.with_name(csc_copy.name.replace("pha3", "rmf3")), cache=None)
    row = load(csc_copy)
    np.testing.assert_allclose(
        row.effective_area_cm2, folded_area(arf.specresp, rmf, EnergyGrid.default())
    )


def test_arf_hole_is_caught_before_the_rmf_spreads_it(csc_copy: Path) -> None:
    arf_path = csc_copy.with_name(csc_copy.name.replace("pha3", "arf3"))
    with fits.open(arf_path) as h:
        e = 0.5 * (h[1].data["ENERG_LO"] + h[1].data["ENERG_HI"])
        h[1].data["SPECRESP"][(e > 2.0) & (e < 3.0)] = 0.0
        h.writeto(arf_path, overwrite=True)
    with pytest.raises(InputError, match="zero or negative over 2.* keV"):
        load(csc_copy)


def test_unreadable_rmf_is_named(csc_copy: Path) -> None:
    rmf = csc_copy.with_name(csc_copy.name.replace("pha3", "rmf3"))
    rmf.write_bytes(rmf.read_bytes()[:5000])
    with pytest.raises(InputError, match="RMF .*rmf3.fits unusable"):
        load(csc_copy)


def test_batch_skips_bad_files_and_keeps_the_rest(real_spectra_dir: Path, tmp_path) -> None:
    stem, ext, *_ = CSC["308"]
    good = copy_set(real_spectra_dir, stem, ext, tmp_path)
    (tmp_path / "junk.pha").write_text("this is not FITS")
    _edit_pha(good, tmp_path / "hrc.pha", _header_edit("INSTRUME", "HRC-I"))
    result = ingest_paths([tmp_path], progress=False)
    assert result.n_ingested == 1
    reasons = dict(result.skipped)
    assert any("HRC" in r for r in reasons.values())
    assert any(p.endswith("junk.pha") for p in reasons)


def test_cli_exit_status(real_spectra_dir: Path, tmp_path) -> None:
    from typer.testing import CliRunner

    from xlatent.cli import app

    runner = CliRunner()
    (tmp_path / "junk.pha").write_text("nope")
    bad = runner.invoke(
        app, ["ingest", str(tmp_path / "junk.pha"), "--out", str(tmp_path / "a.h5")]
    )
    assert bad.exit_code != 0 and "nothing could be ingested" in bad.output
    ok = runner.invoke(
        app, ["ingest", str(real_spectra_dir), str(tmp_path / "junk.pha"), "--out",
              str(tmp_path / "b.h5")],
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert len(SpectrumSet.read(tmp_path / "b.h5")) == 4


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_copies_never_crash(real_spectra_dir: Path, tmp_path_factory, data) -> None:
    name = data.draw(
        st.sampled_from(
            ["acisf00308_000N001_r0044_pha3.fits", "acisf00308_000N001_r0044_rmf3.fits",
             "acisf01575_001N001_r0085_pha3.fits.gz", "9774.pi"]
        )
    )  # fmt: skip
    d = tmp_path_factory.mktemp("damaged")
    for f in real_spectra_dir.iterdir():
        if f.name.split("_")[0] == name.split("_")[0] or f.name.startswith(name.split(".")[0]):
            shutil.copy(f, d / f.name)
    raw = (d / name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    mode = data.draw(st.sampled_from(["truncate", "flip"]))
    if mode == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        buf = bytearray(raw)
        for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=20)):
            buf[pos] ^= 0xFF
        raw = bytes(buf)
    (d / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    pha = next(d.glob("*pha3*"), None) or d / "9774.pi"
    try:
        row = load(pha)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert np.all(np.isfinite(row.counts)) and np.all(row.background >= 0)


def test_multimodal_universe_layout(tmp_path) -> None:
    path = tmp_path / "mmu_chandra.hdf5"
    rng = np.random.default_rng(1)
    n, exposure = 3, 20000.0
    vlen = h5py.special_dtype(vlen=np.dtype("float64"))
    with h5py.File(path, "w") as f:
        f["name"] = np.char.encode(np.array(["2CXO J000001.0+000001", "2CXO B", "2CXO C"]))
        f["obsid"] = np.array([101, 102, 103])
        f["obi"] = np.array([0, 1, 0])
        f["hard_hm"] = np.array([0.1, -0.2, 0.3])
        f["var_prob_b"] = np.array([0.1, 0.9, 0.5])
        for key in ("spectrum_ene_lo", "spectrum_ene_hi", "spectrum_flux", "spectrum_flux_err"):
            f.create_dataset(key, (n,), dtype=vlen)
        truth = []
        for i in range(n):
            edges = np.geomspace(0.5, 8.0, 40 + i)
            width = np.diff(edges)
            counts = rng.integers(5, 50, edges.size - 1).astype(float)
            truth.append(counts.sum())
            f["spectrum_ene_lo"][i] = edges[:-1]
            f["spectrum_ene_hi"][i] = edges[1:]
            f["spectrum_flux"][i] = counts / (exposure * width)
            f["spectrum_flux_err"][i] = np.sqrt(counts) / (exposure * width)
    s = mmu.read(path)
    assert len(s) == 3
    np.testing.assert_allclose(s.exposure_s, exposure, rtol=1e-9)
    np.testing.assert_allclose(s.counts.sum(1), truth, rtol=1e-9)
    assert list(s.meta["obsid"]) == [101, 102, 103]
    # the catalogue's photon-flux ratio keeps its CSC name beside the count ratio
    assert s.meta["hard_hm"].tolist() == [0.1, -0.2, 0.3] and "hr_counts_hm" in s.meta
    assert not s.meta["effective_area_known"].any() and not s.meta["background_known"].any()
    assert s.meta["exposure_estimated"].all()
    assert s.meta["name"][0] == "2CXO J000001.0+000001"
    # The same file through the one entry point:
    assert ingest_paths([path], progress=False).n_ingested == 3


def test_background_named_only_by_backfile_is_not_a_source(
    real_spectra_dir: Path, tmp_path
) -> None:
    for name in ("9774.arf", "9774.rmf"):
        shutil.copy(real_spectra_dir / name, tmp_path / name)
    shutil.copy(real_spectra_dir / "9774_bg.pi", tmp_path / "sky_region.pi")
    _edit_pha(
        real_spectra_dir / "9774.pi",
        tmp_path / "9774.pi",
        _header_edit("BACKFILE", "sky_region.pi"),
    )
    result = ingest_paths([tmp_path], progress=False)
    assert result.n_ingested == 1 and result.skipped == []
    assert result.spectrum_set.meta["bkg_file"][0].endswith("sky_region.pi")


# ------------------------------------------------------------------- format variants
def test_rate_tlmin_grouping_quality_variants_read_the_same(csc_copy: Path) -> None:
    """RATE instead of COUNTS, no CHANNEL column (TLMIN numbers the rows), GROUPING/QUALITY."""

    def edit(h):
        for i in [i for i, hdu in enumerate(h) if hdu.name == "SPECTRUM"]:  # source, bkg
            hdu = h[i]
            d, exposure = hdu.data, hdu.header["EXPOSURE"]
            cols = [
                fits.Column("RATE", "E", unit="count/s", array=d["COUNTS"] / exposure),
                fits.Column("GROUPING", "I", array=np.where(np.arange(len(d)) % 2, -1, 1)),
                fits.Column("QUALITY", "I", array=np.zeros(len(d), dtype=np.int16)),
            ]
            header = hdu.header.copy()
            for k in [k for k in header if k.startswith(("TTYPE", "TFORM", "TUNIT", "TLMIN",
                                                          "TLMAX", "TDISP"))]:  # fmt: skip
                del header[k]
            new = fits.BinTableHDU.from_columns(cols, header=header, name="SPECTRUM")
            new.header["TLMIN1"] = int(d["CHANNEL"][0])
            h[i] = new

    orig = load(csc_copy)
    variant = load(_edit_pha(csc_copy, csc_copy.with_name("rate_pha3.fits"), edit))
    np.testing.assert_allclose(variant.counts, orig.counts, rtol=1e-6)
    np.testing.assert_allclose(variant.background, orig.background, rtol=1e-6)
    assert variant.exposure_s == orig.exposure_s
