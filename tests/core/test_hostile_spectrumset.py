# ruff: noqa: E501  (the table of damage kinds reads best one per line)
"""Damaged, truncated and hand-edited SpectrumSet files: every one is refused with an
XlatentError naming the file (one line), never another exception type."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xlatent.core.hdf5_layout as ssmod
from xlatent.core import EnergyGrid, InputError, SchemaError, SpectrumSet, XlatentError, seal

N = 5


def valid_set() -> SpectrumSet:
    rng = np.random.default_rng(3)
    g = EnergyGrid.default()
    m = g.n_bins
    s = SpectrumSet(
        grid=g,
        counts=rng.poisson(4.0, (N, m)),
        background=rng.random((N, m)) * 0.1,
        exposure_s=np.full(N, 1e4),
        effective_area_cm2=np.full((N, m), 400.0),
        meta=pd.DataFrame(
            {
                "spec_id": [f"t{i}" for i in range(N)],
                "source_class": ["AGN", "YSO", "CV", "NS", "AGN"],
            }
        ),  # fmt: skip
        expected_counts=np.full((N, m), 4.0),
    ).update_band_columns()
    s.add_provenance("unit-test")
    return s


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return valid_set().write(tmp_path_factory.mktemp("pristine") / "set.h5")


def _replace(name: str, data: object, **kw: object) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data, **kw)

    return edit


def _delete(name: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]

    return edit


def _del_attr(obj: str, attr: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[obj].attrs[attr]

    return edit


def _set_attr(obj: str, attr: str, value: object) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[obj].attrs[attr] = value

    return edit


def _scale(name: str, index: tuple, value: float) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        a = f[name][()]
        a[index] = value
        del f[name]
        f.create_dataset(name, data=a)

    return edit


def _text_column(col: str, values: list) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f["meta"][col]
        ds = f["meta"].create_dataset(col, data=np.array(values, dtype=object),
                                      dtype=h5py.string_dtype())  # fmt: skip
        ds.attrs["kind"] = "str"

    return edit


def _huge(rows: int, all_datasets: bool) -> Callable[[h5py.File], None]:
    """Datasets claiming ``rows`` rows; chunked and never written, so the file stays tiny."""

    def edit(f: h5py.File) -> None:
        m = f["counts"].shape[1]
        names = ["counts", "background", "effective_area_cm2", "expected_counts"]
        for name in names if all_datasets else ["counts"]:
            del f[name]
            f.create_dataset(name, shape=(rows, m), dtype="f8", chunks=(1024, m))
        if all_datasets:
            del f["exposure_s"]
            f.create_dataset("exposure_s", shape=(rows,), dtype="f8", chunks=(1024,))
            for col in list(f["meta"]):
                dt = f["meta"][col].dtype
                del f["meta"][col]
                f["meta"].create_dataset(col, shape=(rows,), dtype=dt, chunks=(1024,))

    return edit


def _bad_utf8(f: h5py.File) -> None:
    del f["meta"]["source_class"]
    ds = f["meta"].create_dataset("source_class", shape=(N,), dtype=h5py.string_dtype("utf-8"))
    ds[...] = np.array([b"\xff\xfebad"] * N, dtype=object)
    ds.attrs["kind"] = "str"


def _numbers_marked_text(f: h5py.File) -> None:
    del f["meta"]["source_class"]
    f["meta"].create_dataset("source_class", data=np.zeros(N)).attrs["kind"] = "str"


def _group_for_dataset(f: h5py.File) -> None:
    del f["counts"]
    f.create_group("counts")


M = EnergyGrid.default().n_bins

#: name -> (edit of an open file, expected error type, a phrase the message must contain)
EDITS: dict[str, tuple[Callable[[h5py.File], None], type, str]] = {
    "no energy_edges_kev": (_delete("energy_edges_kev"), SchemaError, "'energy_edges_kev' is missing"),
    "no counts": (_delete("counts"), SchemaError, "'counts' is missing"),
    "no background": (_delete("background"), SchemaError, "'background' is missing"),
    "no effective_area": (_delete("effective_area_cm2"), SchemaError, "'effective_area_cm2' is missing"),
    "no exposure_s": (_delete("exposure_s"), SchemaError, "'exposure_s' is missing"),
    "no meta group": (_delete("meta"), SchemaError, "'meta' is missing"),
    "no spec_id column": (_delete("meta/spec_id"), SchemaError, "'spec_id' is missing"),
    "no text column": (_delete("meta/source_class"), SchemaError, "'source_class' is missing"),
    "no numeric column": (_delete("meta/hr_counts_hm"), SchemaError, "'hr_counts_hm' is missing"),
    "no format attr": (_del_attr("/", "format"), InputError, "no 'format' attribute"),
    "no schema_version": (_del_attr("/", "schema_version"), SchemaError, "schema_version"),
    "no meta columns attr": (_del_attr("meta", "columns"), SchemaError, "'columns'"),
    "other format": (_set_attr("/", "format", "something.else"), InputError, "something.else"),
    "format is a number": (_set_attr("/", "format", 7), InputError, "not an xlatent"),
    "schema_version 99": (_set_attr("/", "schema_version", 99), SchemaError, "version 99"),
    "schema_version text": (_set_attr("/", "schema_version", "1"), SchemaError, "not an integer"),
    "schema_version float": (_set_attr("/", "schema_version", 1.5), SchemaError, "not an integer"),
    "columns not json": (_set_attr("meta", "columns", "[spec_id"), InputError, "JSON list"),
    "columns a dict": (_set_attr("meta", "columns", '{"a": 1}'), InputError, "JSON list"),
    "columns repeated": (_set_attr("meta", "columns", '["spec_id", "spec_id"]'), InputError, "more than once"),
    "columns lists a ghost": (_set_attr("meta", "columns", '["spec_id", "ghost"]'), SchemaError, "'ghost' is missing"),
    "counts bins != grid": (_replace("counts", np.ones((N, M - 1))), SchemaError, "'counts' has shape"),
    "counts 1-d": (_replace("counts", np.ones(N * M)), SchemaError, "'counts' has shape"),
    "background rows differ": (_replace("background", np.ones((N + 1, M))), SchemaError, "'background' has shape"),
    "expected bins differ": (_replace("expected_counts", np.ones((N, M + 2))), SchemaError, "'expected_counts' has shape"),
    "exposure 2-d": (_replace("exposure_s", np.ones((N, 1))), SchemaError, "'exposure_s' has shape"),
    "meta column short": (_replace("meta/hr_counts_hm", np.ones(N - 1)), SchemaError, "'hr_counts_hm' has shape"),
    "one grid edge": (_replace("energy_edges_kev", np.ones(1)), SchemaError, "'energy_edges_kev' has shape"),
    "counts are strings": (_replace("counts", np.full((N, M), b"x")), SchemaError, "expected numbers"),
    "exposure complex": (_replace("exposure_s", np.ones(N) * 1j), SchemaError, "expected numbers"),
    "meta column compound": (_replace("meta/hr_counts_hm", np.zeros(N, dtype=[("a", "f8"), ("b", "i4")])), SchemaError, "expected numbers"),
    "text column holds numbers": (_numbers_marked_text, SchemaError, "marked as text"),
    "counts is a group": (_group_for_dataset, SchemaError, "'counts' is not a dataset"),
    "negative counts": (_scale("counts", (2, 7), -1.0), InputError, "'counts'"),
    "nan counts": (_scale("counts", (0, 0), np.nan), InputError, "'counts'"),
    "inf background": (_scale("background", (4, 100), np.inf), InputError, "'background'"),
    "negative area": (_scale("effective_area_cm2", (1, 1), -5.0), InputError, "'effective_area_cm2'"),
    "nan expected": (_scale("expected_counts", (1, 1), np.nan), InputError, "'expected_counts'"),
    "zero exposure": (_scale("exposure_s", (3,), 0.0), InputError, "'exposure_s'"),
    "negative exposure": (_scale("exposure_s", (0,), -1e4), InputError, "'exposure_s'"),
    "edges not increasing": (_scale("energy_edges_kev", (5,), 100.0), InputError, "increasing"),
    "edges negative": (_scale("energy_edges_kev", (0,), -0.5), InputError, "increasing"),
    "edges nan": (_scale("energy_edges_kev", (3,), np.nan), InputError, "increasing"),
    "duplicate spec_id": (_text_column("spec_id", ["a", "b", "a", "c", "d"]), InputError, "'a' appears more than once"),
    "empty spec_id": (_text_column("spec_id", ["a", "", "c", "d", "e"]), InputError, "spec_id is empty"),
    "meta not utf-8": (_bad_utf8, InputError, "UTF-8"),
    "claims 1e12 rows in counts": (_huge(10**12, False), SchemaError, "'background' has shape"),
    "claims 1e12 rows everywhere": (_huge(10**12, True), InputError, "GiB"),
}  # fmt: skip


def _refuses_hand_edit(kind: str, pristine: Path, tmp_path: Path, read) -> None:
    """``read`` of a hand-edited copy: refused by the seal, then, re-sealed (as a tool that
    forges it would), by the content checks with a one-line message naming file and reason."""
    edit, error, phrase = EDITS[kind]
    path = tmp_path / "set.h5"
    shutil.copy(pristine, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(InputError, match="changed outside xlatent"):
        read(path)
    seal.seal(path)
    with pytest.raises(error) as info:
        read(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    assert phrase in msg


@pytest.mark.parametrize("kind", list(EDITS))
def test_hand_edited_file_is_refused_naming_file_and_reason(kind, pristine, tmp_path) -> None:
    _refuses_hand_edit(kind, pristine, tmp_path, SpectrumSet.read)


def _read_through_view(path: Path) -> None:
    """Open ``path`` lazily and read every row, a few at a time."""
    with SpectrumSet.open(path) as view:
        for _ in view.iter_batches(2):
            pass


@pytest.mark.parametrize("kind", list(EDITS))
def test_hand_edited_file_is_refused_by_open(kind, pristine, tmp_path) -> None:
    """The same refusals through SpectrumSet.open: when it opens, or when the rows are read."""
    _refuses_hand_edit(kind, pristine, tmp_path, _read_through_view)


def _truncated(size: int) -> list[int]:
    return sorted({0, 1, 8, 100, 512, 2048, size // 4, size // 2, 3 * size // 4, size - 100,
                   size - 1})  # fmt: skip


def test_truncated_files_are_refused(pristine, tmp_path) -> None:
    raw = pristine.read_bytes()
    for cut in _truncated(len(raw)):
        path = tmp_path / f"cut{cut}.h5"
        path.write_bytes(raw[:cut])
        for read in (SpectrumSet.read, _read_through_view):
            with pytest.raises(XlatentError) as info:
                read(path)
            assert str(path) in str(info.value) and "\n" not in str(info.value), cut


@pytest.mark.filterwarnings("ignore:.*provenance is unreadable")
def test_flipped_bytes_are_refused_or_read_back_unchanged(pristine, tmp_path) -> None:
    """Flip one byte at many offsets: the read either fails with an XlatentError naming the
    file or, where the byte was unused, gives back exactly the original set (the data are
    checksummed, and so are the HDF5 object headers, so a flipped byte there cannot pass
    unnoticed; variable-length text lives in HDF5's global heap, which has no checksum)."""
    raw = pristine.read_bytes()
    original = SpectrumSet.read(pristine)
    path = tmp_path / "flip.h5"
    n_refused = 0
    for offset in range(0, len(raw), max(1, len(raw) // 150)):
        flipped = bytearray(raw)
        flipped[offset] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            got = SpectrumSet.read(path)
        except XlatentError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            n_refused += 1
            continue
        _assert_same_numbers(got, original, offset)
    assert n_refused > 0


def _assert_same_numbers(got: SpectrumSet, original: SpectrumSet, offset: int) -> None:
    for name in ("counts", "background", "effective_area_cm2", "exposure_s", "expected_counts"):
        assert np.array_equal(getattr(got, name), getattr(original, name)), (name, offset)
    assert got.grid == original.grid, offset


@pytest.mark.parametrize("content", [b"", b"hello, not hdf5\n", b"\x89HDF\r\n\x1a\n" + b"\0" * 64])
def test_non_hdf5_files_are_refused(content, tmp_path) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    with pytest.raises(InputError, match="x.h5"):
        SpectrumSet.read(path)


def test_directory_and_missing_file_are_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="not a file"):
        SpectrumSet.read(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        SpectrumSet.read(tmp_path / "absent.h5")


def test_memory_limit_is_checked_before_reading(pristine, monkeypatch) -> None:
    monkeypatch.setattr(ssmod, "MAX_READ_BYTES", 1000)
    with pytest.raises(InputError, match="GiB"):
        SpectrumSet.read(pristine)
    monkeypatch.setattr(ssmod, "MAX_READ_BYTES", None)
    assert len(SpectrumSet.read(pristine)) == N


@pytest.mark.parametrize("value", ["not json", '{"step": 1}', b"\xff\xfe"])
def test_unreadable_provenance_is_tolerated_with_a_warning(value, pristine, tmp_path) -> None:
    path = tmp_path / "set.h5"
    shutil.copy(pristine, path)
    with h5py.File(path, "r+") as f:
        f.attrs["provenance"] = np.bytes_(value) if isinstance(value, bytes) else value
    seal.seal(path)
    with pytest.warns(UserWarning, match="provenance is unreadable"):
        s = SpectrumSet.read(path)
    assert s.provenance == [{"step": "provenance-unreadable", "reason": s.provenance[0]["reason"]}]
    np.testing.assert_array_equal(s.counts, valid_set().counts)


def test_edited_outside_xlatent_is_refused_unless_trusted(pristine, tmp_path) -> None:
    path = tmp_path / "set.h5"
    shutil.copy(pristine, path)
    with h5py.File(path, "r+") as f:
        f["meta"].create_dataset("my_note", data=np.array([b"x"] * N))
        f["meta"].attrs["columns"] = json.dumps(
            [*json.loads(f["meta"].attrs["columns"]), "my_note"]
        )
    with pytest.raises(InputError, match="changed outside xlatent"):
        SpectrumSet.read(path)
    s = SpectrumSet.read_hdf5(path, check_seal=False)
    assert list(s.meta["my_note"]) == ["x"] * N


def test_unsealed_files_of_older_versions_still_read(pristine, tmp_path) -> None:
    """Files written before the seal start with the HDF5 signature: read without a check."""
    with h5py.File(pristine) as f:
        assert f.userblock_size == seal.USERBLOCK_BYTES
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as dst, h5py.File(pristine) as src:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            src.copy(src[name], dst, name)
    assert path.read_bytes()[:4] == b"\x89HDF"
    assert np.array_equal(SpectrumSet.read(path).counts, valid_set().counts)


def test_write_refuses_values_read_would_refuse(tmp_path) -> None:
    s = valid_set()
    s.counts[1, 2] = -3.0
    with pytest.raises(ValueError, match="'counts'"):
        s.write(tmp_path / "bad.h5")
    s = valid_set()
    s.exposure_s[0] = 0.0
    with pytest.raises(ValueError, match="'exposure_s'"):
        s.write(tmp_path / "bad.h5")
    assert not any(tmp_path.iterdir())


def test_empty_set_round_trips(tmp_path) -> None:
    s = valid_set()[[]]
    r = SpectrumSet.read(s.write(tmp_path / "empty.h5"))
    assert len(r) == 0 and r.grid == s.grid


@pytest.mark.filterwarnings("ignore:.*provenance is unreadable")
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzzed_bytes_never_escape_as_other_errors(data, pristine, tmp_path) -> None:
    raw = bytearray(pristine.read_bytes())
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))), label="truncate at")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                               max_size=8), label="flips")  # fmt: skip
    for offset, mask in flips:
        raw[offset] ^= mask
    if cut is not None:
        raw = raw[:cut]
    path = tmp_path / "fuzz.h5"
    path.write_bytes(bytes(raw))
    for read in (SpectrumSet.read, _read_through_view):
        try:
            read(path)
        except XlatentError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
