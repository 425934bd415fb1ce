from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from xlatent.core import EnergyGrid, InputError, SchemaError, SpectrumSet, seal


def make_set(n: int = 5, seed: int = 0, truth: bool = True) -> SpectrumSet:
    rng = np.random.default_rng(seed)
    g = EnergyGrid.default()
    m = g.n_bins
    return SpectrumSet(
        grid=g,
        counts=rng.poisson(4.0, (n, m)),
        background=rng.random((n, m)) * 0.1,
        exposure_s=np.full(n, 1e4),
        effective_area_cm2=np.full((n, m), 400.0),
        meta=pd.DataFrame({"source_class": ["AGN", "YSO", "CV", "NS", "AGN"][:n]}),
        expected_counts=np.full((n, m), 4.0) if truth else None,
    ).update_band_columns()


def test_round_trip_keeps_arrays_meta_and_provenance(tmp_path) -> None:
    s = make_set()
    s.add_provenance("unit-test", note="x")
    path = s.write(tmp_path / "set.h5")
    r = SpectrumSet.read(path)
    np.testing.assert_array_equal(r.counts, s.counts)
    np.testing.assert_array_equal(r.background, s.background)
    np.testing.assert_array_equal(r.expected_counts, s.expected_counts)
    assert r.grid == s.grid
    pd.testing.assert_frame_equal(r.meta, s.meta, check_dtype=False)
    assert r.provenance[-1]["step"] == "unit-test"


def test_band_columns_and_hardness() -> None:
    s = make_set()
    net = s.net_counts
    soft = s.grid.band_mask(0.5, 1.2)
    assert s.meta["net_counts_s"].to_numpy() == pytest.approx(net[:, soft].sum(1))
    h, m = s.meta["net_counts_h"], s.meta["net_counts_m"]
    assert s.meta["hr_counts_hm"].to_numpy() == pytest.approx(((h - m) / (h + m)).to_numpy())


def test_subset_and_concat() -> None:
    s = make_set()
    sub = s[[0, 2]]
    assert len(sub) == 2 and list(sub.meta["source_class"]) == ["AGN", "CV"]
    assert len(s[s.meta["source_class"].to_numpy() == "AGN"]) == 2
    other = make_set(seed=1)
    other.meta["spec_id"] = [f"b{i}" for i in range(len(other))]
    both = SpectrumSet.concat([s, other])
    assert len(both) == 10 and both.has_truth


def test_shape_errors_and_duplicate_ids() -> None:
    g = EnergyGrid.default()
    with pytest.raises(ValueError, match="counts"):
        SpectrumSet(g, np.zeros((2, 5)), np.zeros((2, 5)), [1, 1], np.zeros((2, 5)), None)
    s = make_set()
    meta = s.meta.copy()
    meta.loc[1, "spec_id"] = meta.loc[0, "spec_id"]
    with pytest.raises(ValueError, match="unique"):
        SpectrumSet(g, s.counts, s.background, s.exposure_s, s.effective_area_cm2, meta)


def test_other_schema_version_is_refused(tmp_path) -> None:
    path = make_set().write(tmp_path / "set.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 99
    seal.seal(path)  # as a future xlatent would have written it
    with pytest.raises(SchemaError, match="schema version 99"):
        SpectrumSet.read(path)


def test_not_a_set_is_refused(tmp_path) -> None:
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="x.h5"):
        SpectrumSet.read(bad)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch) -> None:
    from xlatent.core.hdf5_write import SpectrumSetWriter

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(SpectrumSetWriter, "_append_column", boom)
    target = tmp_path / "set.h5"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="disk full"):
        make_set().write(target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.h5"]


def test_read_any_registered_format(tmp_path: Path, real_spectra_dir: Path) -> None:
    """SpectrumSet.read reads its own layout and, through the registry, any input format."""
    pha = SpectrumSet.read(real_spectra_dir / "acisf01878_000N001_r0100_pha3.fits")
    assert len(pha) == 1 and pha.meta["obsid"].iloc[0] == 1878
    from xlatent.io.ingest import read_spectra

    assert np.array_equal(pha.counts, read_spectra(pha.meta["source_file"].iloc[0]).counts)
    assert 460 <= pha.counts.sum() <= 476  # the file's 476 source counts, those in 0.5-8 keV
    same = SpectrumSet.read(real_spectra_dir / "acisf01878_000N001_r0100_pha3.fits", format="pha")
    assert np.array_equal(same.counts, pha.counts)
    path = pha.write(tmp_path / "one.h5")
    back = SpectrumSet.read(path)
    assert np.array_equal(back.counts, pha.counts) and list(back.meta["spec_id"]) == [
        "1878_000_0100"
    ]
    with pytest.raises(InputError, match="another grid"):
        SpectrumSet.read(path, grid=EnergyGrid.log(0.5, 7.0, 16))
    with pytest.raises(ValueError, match="unknown format 'bogus'"):
        SpectrumSet.read(path, format="bogus")
    junk = tmp_path / "notes.txt"
    junk.write_text("not a spectrum\n")
    with pytest.raises(InputError, match="notes.txt"):
        SpectrumSet.read(junk)
