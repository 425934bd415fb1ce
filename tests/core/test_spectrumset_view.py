"""Out-of-core SpectrumSets: SpectrumSetWriter (blocks, atomic) and SpectrumSet.open (lazy
view): round trips, storage dtypes, old-layout files, damaged content met in a later block."""

from __future__ import annotations

import gc
import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import xlatent
import xlatent.core.hdf5_layout as layout
from xlatent.core import (
    EnergyGrid,
    InputError,
    SpectrumSet,
    SpectrumSetView,
    SpectrumSetWriter,
    seal,
)

N = 2500  # > one chunk of every dataset (1,024 float64 rows, 2,048 float32 rows)
ARRAYS = ("counts", "background", "exposure_s", "effective_area_cm2", "expected_counts")


def make_set(n: int = N, seed: int = 0, start: int = 0) -> SpectrumSet:
    rng = np.random.default_rng(seed)
    g = EnergyGrid.default()
    m = g.n_bins
    s = SpectrumSet(
        grid=g,
        counts=rng.poisson(3.0, (n, m)).astype(float),  # integers: exact in float32
        background=rng.random((n, m)) * 0.1,  # not exact in float32
        exposure_s=rng.uniform(1e3, 1e5, n),
        effective_area_cm2=rng.uniform(10.0, 600.0, (n, m)),
        meta=pd.DataFrame(
            {
                "spec_id": [f"s{start + i}" for i in range(n)],
                "source_class": rng.choice(["AGN", "YSO", ""], n),
                "flag": rng.random(n) < 0.5,
                "k": np.arange(start, start + n),
            }
        ),
        expected_counts=rng.uniform(0.0, 5.0, (n, m)),
    ).update_band_columns()
    s.add_provenance("unit-test")
    return s


def write_blocks(s: SpectrumSet, path: Path, rows: int = 700) -> Path:
    with SpectrumSetWriter(path, s.grid, s.provenance) as w:
        for a in range(0, len(s), rows):
            w.append(s[a : a + rows])
    return path


def assert_same(a: SpectrumSet, b: SpectrumSet) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == np.float64 and np.array_equal(x, y), name
    pd.testing.assert_frame_equal(a.meta, b.meta)
    assert a.grid == b.grid and a.provenance == b.provenance


def joined(batches: list[SpectrumSet]) -> SpectrumSet:
    """Batches stacked (concat also stacks their provenance: keep one copy)."""
    s = SpectrumSet.concat(batches)
    s.provenance = batches[0].provenance
    return s


@pytest.fixture(scope="module")
def eager() -> SpectrumSet:
    return make_set()


@pytest.fixture(scope="module")
def blocked(eager, tmp_path_factory) -> Path:
    return write_blocks(eager, tmp_path_factory.mktemp("v") / "set.h5")


def test_blocks_written_equal_one_write_and_read_back(eager, blocked, tmp_path) -> None:
    whole = SpectrumSet.read_hdf5(eager.write(tmp_path / "one.h5"))
    back = SpectrumSet.read_hdf5(blocked)
    assert_same(back, whole)
    # Lossless where it must be; area and truth to float32 precision.
    for name in ("counts", "background", "exposure_s"):
        assert np.array_equal(getattr(back, name), getattr(eager, name)), name
    for name in ("effective_area_cm2", "expected_counts"):
        np.testing.assert_allclose(getattr(back, name), getattr(eager, name), rtol=6e-8)
        assert not np.array_equal(getattr(back, name), getattr(eager, name))
    pd.testing.assert_frame_equal(back.meta, eager.meta)
    assert back.provenance == eager.provenance


def test_storage_dtypes_and_chunks(blocked) -> None:
    with h5py.File(blocked) as f:
        dtypes = {name: f[name].dtype for name in ARRAYS}
        chunk_bytes = {name: np.prod(f[name].chunks) * f[name].dtype.itemsize
                       for name in ("counts", "background", "effective_area_cm2")}  # fmt: skip
    assert dtypes == {"counts": np.float32, "background": np.float64, "exposure_s": np.float64,
                      "effective_area_cm2": np.float32, "expected_counts": np.float32}  # fmt: skip
    assert all(0.5 * 2**20 <= b <= 2 * 2**20 for b in chunk_bytes.values()), chunk_bytes


def test_a_later_inexact_block_turns_float32_counts_into_float64(tmp_path) -> None:
    s = make_set(300)
    s.counts[250, 7] = 0.1  # not a float32: the dataset becomes float64, nothing is lost
    path = write_blocks(s, tmp_path / "p.h5", rows=100)
    with h5py.File(path) as f:
        assert f["counts"].dtype == np.float64
    assert np.array_equal(SpectrumSet.read_hdf5(path).counts, s.counts)


def test_view_reads_what_read_hdf5_reads(eager, blocked) -> None:
    whole = SpectrumSet.read_hdf5(blocked)
    with SpectrumSet.open(blocked) as view:
        assert isinstance(view, SpectrumSetView) and len(view) == N and view.has_truth
        assert view.grid == eager.grid and view.provenance == eager.provenance
        pd.testing.assert_frame_equal(view.meta, whole.meta)
        assert_same(view[1000:2100], whole[1000:2100])
        assert_same(view[-5:], whole[-5:])
        assert_same(view[::400], whole[::400])
        assert_same(view[7], whole[7])
        idx = np.array([2499, 3, 1500, -1 - 100, 0, 1024, 1023])
        assert_same(view[idx], whole[idx])  # read sorted, returned in the order asked
        assert_same(view[list(idx)], whole[list(idx)])
        mask = whole.meta["flag"].to_numpy()
        assert_same(view[mask], whole[mask])
        assert len(view[[]]) == 0 and len(view[5:5]) == 0
        batches = list(view.iter_batches(batch_size=1000))
        assert [len(b) for b in batches] == [1000, 1000, 500]
        assert_same(joined(batches), whole)
        picked = list(view.iter_batches(batch_size=2, rows=idx))
        assert_same(joined(picked), whole[idx])
        assert_same(view.load(), whole)
        assert view.summary() == whole.summary()
        with pytest.raises(IndexError):
            view[[N]]
        with pytest.raises(ValueError, match="repeats"):
            view[[1, 1]]
    with pytest.raises(ValueError, match="closed"):
        view[0:1]


def test_view_pickles_as_its_path(blocked) -> None:
    with SpectrumSet.open(blocked) as view:
        again = pickle.loads(pickle.dumps(view))
        assert_same(again[10:20], view[10:20])
        again.close()


def test_exported_from_core_and_top_level() -> None:
    assert xlatent.SpectrumSetView is SpectrumSetView
    assert xlatent.SpectrumSetWriter is SpectrumSetWriter


# ---------------------------------------------------------------------- atomic writes
class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_writer_failing_midway_leaves_old_file_and_no_temp(tmp_path, error) -> None:
    target = tmp_path / "set.h5"
    target.write_bytes(b"previous")
    s = make_set(300)
    with pytest.raises(error), SpectrumSetWriter(target, s.grid) as w:
        w.append(s[:100])
        raise error
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.h5"]
    fresh = tmp_path / "fresh.h5"
    with pytest.raises(Boom), SpectrumSetWriter(fresh, s.grid) as w:
        w.append(s[:100])
        raise Boom
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.h5"]


def test_a_dropped_writer_leaves_no_temp(tmp_path) -> None:
    s = make_set(10)
    w = SpectrumSetWriter(tmp_path / "x.h5", s.grid)
    w.append(s)
    del w
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_inconsistent_blocks(tmp_path) -> None:
    s = make_set(20)
    other = make_set(5, start=100)
    cases = {
        "differ from the first": other.meta.drop(columns=["flag"]),
        "appears more than once": s.meta.iloc[:5].reset_index(drop=True),
    }
    for phrase, meta in cases.items():
        bad = SpectrumSet(other.grid, other.counts, other.background, other.exposure_s,
                          other.effective_area_cm2, meta, other.expected_counts)  # fmt: skip
        with (
            pytest.raises(ValueError, match=phrase),
            SpectrumSetWriter(tmp_path / "a.h5", s.grid) as w,
        ):
            w.append(s)
            w.append(bad)
    no_truth = SpectrumSet(other.grid, other.counts, other.background, other.exposure_s,
                           other.effective_area_cm2, other.meta)  # fmt: skip
    with (
        pytest.raises(ValueError, match="expected_counts"),
        SpectrumSetWriter(tmp_path / "a.h5", s.grid) as w,
    ):
        w.append(s)
        w.append(no_truth)
    with (
        pytest.raises(ValueError, match="grid"),
        SpectrumSetWriter(tmp_path / "a.h5", EnergyGrid.log(0.5, 7.0, 16)) as w,
    ):
        w.append(s)
    other.counts[2, 3] = np.nan
    with (
        pytest.raises(ValueError, match="spectrum 22, bin 3"),
        SpectrumSetWriter(tmp_path / "a.h5", s.grid) as w,
    ):
        w.append(s)
        w.append(other)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_without_blocks_writes_an_empty_set(tmp_path) -> None:
    g = EnergyGrid.default()
    with SpectrumSetWriter(tmp_path / "e.h5", g) as w:
        pass
    s = SpectrumSet.read_hdf5(w.path)
    assert len(s) == 0 and s.grid == g
    with SpectrumSet.open(w.path) as view:
        assert len(view) == 0 and list(view.iter_batches()) == []


def test_arrays_first_then_meta_write_the_same_file(eager, blocked, tmp_path) -> None:
    """append_arrays as rows come, then append_meta in other blocks and the provenance
    (a streamed ingest): the file of append()."""
    with SpectrumSetWriter(tmp_path / "split.h5", eager.grid, [{"step": "old"}]) as w:
        for a in range(0, N, 700):
            block = eager[a : a + 700]
            block.meta = block.meta.iloc[::-1]  # ignored: meta comes later
            w.append_arrays(block)
        with pytest.raises(ValueError, match="still to come"):
            w.append(eager[:1])
        for a in range(0, N, 1000):
            w.append_meta(eager.meta.iloc[a : a + 1000])
        w.set_provenance(eager.provenance)
    assert_same(SpectrumSet.read_hdf5(w.path), SpectrumSet.read_hdf5(blocked))


def test_meta_must_cover_the_arrays_once(tmp_path) -> None:
    s = make_set(20)
    with pytest.raises(ValueError, match="meta for 12 of 20 rows"):
        with SpectrumSetWriter(tmp_path / "a.h5", s.grid) as w:
            w.append_arrays(s)
            w.append_meta(s.meta.iloc[:12])
    with pytest.raises(ValueError, match="meta for 21 rows, arrays for 20"):
        with SpectrumSetWriter(tmp_path / "a.h5", s.grid) as w:
            w.append_arrays(s)
            w.append_meta(s.meta.iloc[:12])
            w.append_meta(s.meta.iloc[11:])
    with pytest.raises(ValueError, match="appears more than once"):
        with SpectrumSetWriter(tmp_path / "a.h5", s.grid) as w:
            w.append_arrays(s)
            w.append_arrays(s)
            w.append_meta(s.meta)
            w.append_meta(s.meta)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ old files, damage
def write_old_layout(s: SpectrumSet, path: Path) -> Path:
    """The layout written before issue 17: float64, fixed-size gzip-4 datasets, 1,024-row
    chunks (same format name and schema version)."""
    with h5py.File(path, "w", libver=("v110", "v110"), userblock_size=512) as f:
        f.attrs["format"] = "xlatent.SpectrumSet"
        f.attrs["schema_version"] = 1
        f.attrs["xlatent_version"] = "0.old"
        f.attrs["provenance"] = json.dumps(s.provenance)
        f.create_dataset("energy_edges_kev", data=s.grid.edges_kev, fletcher32=True)
        opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
        for name in ("counts", "background", "effective_area_cm2", "expected_counts"):
            f.create_dataset(name, data=getattr(s, name), chunks=(1024, s.grid.n_bins), **opts)
        f.create_dataset("exposure_s", data=s.exposure_s, fletcher32=True)
        g = f.create_group("meta")
        g.attrs["columns"] = json.dumps(list(s.meta.columns))
        for col in s.meta.columns:
            values = s.meta[col]
            if values.dtype.kind in "biuf":
                g.create_dataset(col, data=values.to_numpy(), fletcher32=True)
            else:
                ds = g.create_dataset(col, data=values.astype(str).to_numpy(dtype=object),
                                      dtype=h5py.string_dtype())  # fmt: skip
                ds.attrs["kind"] = "str"
    seal.seal(path)
    return path


def test_old_layout_files_read_exactly(eager, tmp_path) -> None:
    path = write_old_layout(eager, tmp_path / "old.h5")
    for s in (SpectrumSet.read_hdf5(path), SpectrumSet.open(path).load()):
        for name in ARRAYS:  # stored as float64: every value comes back
            assert np.array_equal(getattr(s, name), getattr(eager, name)), name
        pd.testing.assert_frame_equal(s.meta, eager.meta)
    with SpectrumSet.open(path) as view:
        assert np.array_equal(view[[2000, 5]].effective_area_cm2,
                              eager.effective_area_cm2[[2000, 5]])  # fmt: skip


def test_nan_in_a_later_chunk_fails_when_that_block_is_read(blocked, tmp_path) -> None:
    path = tmp_path / "nan.h5"
    shutil.copy(blocked, path)
    with h5py.File(path, "r+") as f:
        f["counts"][2300, 9] = np.nan
    seal.seal(path)  # past the seal: the content checks must find it
    with SpectrumSet.open(path) as view:  # meta and grid are fine: opens
        assert len(view[0:2048]) == 2048
        for sel in (slice(2200, 2400), [2300, 4], slice(None)):
            with pytest.raises(InputError) as info:
                view[sel]
            msg = str(info.value)
            assert str(path) in msg and "\n" not in msg
            assert "'counts'" in msg and "spectrum 2300, bin 9" in msg
        with pytest.raises(InputError, match="spectrum 2300"):
            list(view.iter_batches(1000))
    with pytest.raises(InputError, match="spectrum 2300"):
        SpectrumSet.read_hdf5(path)


def test_a_damaged_chunk_fails_with_one_line_naming_the_file(blocked, tmp_path) -> None:
    """Bytes of a stored chunk flipped (Fletcher-32 fails) past a forged seal."""
    path = tmp_path / "flip.h5"
    shutil.copy(blocked, path)
    with h5py.File(path) as f:
        offset = f["background"].id.get_chunk_info(2).byte_offset  # rows 2048..
    raw = bytearray(path.read_bytes())
    raw[offset + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    seal.seal(path)
    with SpectrumSet.open(path) as view:
        assert len(view[0:1024]) == 1024
        with pytest.raises(InputError) as info:
            view[2100:2200]
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_memory_limit_applies_to_read_not_to_open(blocked, monkeypatch) -> None:
    monkeypatch.setattr(layout, "MAX_READ_BYTES", 2 * 2**20)  # the meta fits, the rows do not
    with pytest.raises(InputError, match=r"SpectrumSet\.open"):
        SpectrumSet.read_hdf5(blocked)
    with SpectrumSet.open(blocked) as view:
        assert sum(len(b) for b in view.iter_batches(500)) == N
        with pytest.raises(InputError, match="GiB"):
            view.load()
    monkeypatch.setattr(layout, "MAX_READ_BYTES", 1000)  # not even the meta
    with pytest.raises(InputError, match="GiB"):
        SpectrumSet.open(blocked)


def test_view_reads_meta_by_block_and_column_only(blocked, meta_reads) -> None:
    """Opening reads the spec_id column only (in blocks); a block reads its own meta rows; the whole
    table is read only when ``view.meta`` is touched, then kept (issue 17: each process of a
    parallel run held the whole table)."""
    whole = SpectrumSet.read_hdf5(blocked)
    meta_reads.clear()
    with SpectrumSet.open(blocked) as view:
        assert meta_reads == [(("spec_id",), slice(0, 16384))]  # checked by blocks
        assert view.meta_names == list(whole.meta.columns)
        meta_reads.clear()
        assert_same(view[1000:2100], whole[1000:2100])
        idx = np.array([2499, 3, 1500, 1024, 1023])
        assert_same(view[idx], whole[idx])
        assert [r for _, r in meta_reads][0] == slice(1000, 2100)
        assert all(c is None and r is not None for c, r in meta_reads)
        got = view.meta_columns(["k", "source_class"], rows=[7, 2, -1])
        want = whole.meta[["k", "source_class"]].iloc[[7, 2, N - 1]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
        pd.testing.assert_frame_equal(view.meta_columns(["flag"], slice(5, 9)),
                                      whole.meta[["flag"]][5:9].reset_index(drop=True))  # fmt: skip
        assert len(view.meta_columns(["k"], rows=[])) == 0
        assert view.summary() == whole.summary()
        assert all(r is not None or c in (("spec_id",), ("source_class",)) for c, r in meta_reads)
        meta_reads.clear()
        pd.testing.assert_frame_equal(view.meta, whole.meta)
        assert view.meta is view.meta and len(meta_reads) == 1  # read once, then kept
        assert_same(view[10:20], whole[10:20])  # from the kept table
        assert len(meta_reads) == 1
        with pytest.raises(KeyError, match="ghost"):
            SpectrumSet.open(blocked).meta_columns(["ghost"])
        with pytest.raises(IndexError):
            view.meta_columns(["k"], rows=[N])


def test_a_damaged_text_column_is_refused_when_read(blocked, tmp_path) -> None:
    """Not UTF-8 past the seal: open checks spec_id only; the block read and check_meta
    refuse it (check_meta: the encode driver's check, before any worker reads)."""
    path = tmp_path / "utf.h5"
    shutil.copy(blocked, path)
    with h5py.File(path, "r+") as f:
        f["meta"]["source_class"][2200] = b"\xff\xfebad"
    seal.seal(path)
    with SpectrumSet.open(path) as view:
        assert len(view[0:2000]) == 2000
        for read in (lambda: view[2100:2300], view.check_meta, lambda: view.meta):
            with pytest.raises(InputError, match="'source_class' is not valid UTF-8") as info:
                read()
            assert str(path) in str(info.value)


def test_spec_id_check_survives_hash_collisions(blocked, tmp_path, monkeypatch) -> None:
    """The open's spec_id check compares 64-bit hashes, then the ids whose hashes repeat: a
    collision is no duplicate, a real duplicate is named as the whole read names it."""
    import xlatent.core.hdf5_meta as hdf5_meta

    monkeypatch.setattr(hdf5_meta, "CHECK_ROWS", 1000)  # three blocks
    monkeypatch.setattr(pd.util, "hash_array", lambda a: np.zeros(len(a), dtype=np.uint64))
    with SpectrumSet.open(blocked) as view:
        assert len(view) == N
    path = tmp_path / "dup.h5"
    shutil.copy(blocked, path)
    with h5py.File(path, "r+") as f:
        f["meta"]["spec_id"][2400] = b"s17"
        f["meta"]["spec_id"][2450] = b"s1500"
    seal.seal(path)
    for read in (SpectrumSet.open, SpectrumSet.read_hdf5):
        with pytest.raises(InputError, match="spec_id 's17' appears more than once"):
            read(path)
    monkeypatch.undo()
    with pytest.raises(InputError, match="spec_id 's17' appears more than once"):
        SpectrumSet.open(path)
