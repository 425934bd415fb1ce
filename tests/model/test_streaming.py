"""Training from a set read block by block (``xlatent.model.streaming``, issue 17): from a
written file through a lazy source it gives a working model, reads only small blocks, agrees
with the in-memory digest and calibration, and resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xlatent.core import SpectrumSet
from xlatent.model import SpectralAutoencoder, load_model
from xlatent.model import streaming as st
from xlatent.model.calibration import calibrate
from xlatent.model.distributed import Dist
from xlatent.model.train_state import set_digest
from xlatent.model.training import split_indices

from .conftest import FAST
from .toy import toy_spectrum_set

OPTS = {"latent_dim": 4, "epochs": 2, "seed": 5, "batch_size": 64, "device": "cpu", **FAST}


class LazyFile:
    """A file-backed row source that records every read (``SpectrumSet.open`` when present)."""

    def __init__(self, path: Path) -> None:
        opener = getattr(SpectrumSet, "open", None)
        self._src = opener(path) if opener is not None else SpectrumSet.read_hdf5(path)
        self.grid, self.meta = self._src.grid, self._src.meta
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self._src)

    def __getitem__(self, idx: slice) -> SpectrumSet:
        assert isinstance(idx, slice), "training reads contiguous slices only"
        out = self._src[idx]
        self.reads.append(len(out))
        return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpectrumSet, Path]:
    s = toy_spectrum_set(500, seed=11)
    path = tmp_path_factory.mktemp("stream") / "set.h5"
    s.write(path)
    return SpectrumSet.read_hdf5(path), path


def test_streaming_fit_from_a_file_gives_a_working_model(written, tmp_path, monkeypatch) -> None:
    s, path = written
    monkeypatch.setattr(st, "BLOCK_ROWS", 64)  # 8 blocks, 2 shuffle groups
    src = LazyFile(path)
    model = SpectralAutoencoder(**OPTS).fit(src, checkpoint_dir=tmp_path / "m")  # 50 validation
    assert src.reads and max(src.reads) <= 64  # never more than a block at a time
    hist = model.history_
    assert len(hist) == 2 and hist[-1]["val_deviance_per_bin"] < hist[0]["val_deviance_per_bin"]
    assert model.training_ids_ == s.meta["spec_id"].tolist()
    loaded = load_model(tmp_path / "m")
    z = loaded.transform(s[:50])
    assert z.shape == (50, 4) and np.isfinite(z).all()
    np.testing.assert_array_equal(z, model.transform(s[:50]))
    # The calibration read from the source is the in-memory one for the same weights.
    mem = calibrate(model, s, *split_indices(len(s), model.train_cfg))
    assert loaded.calibration_ is not None
    assert loaded.calibration_.threshold == pytest.approx(mem.threshold, rel=1e-12)
    assert loaded.calibration_.error_scale == pytest.approx(mem.error_scale, rel=1e-12)


def test_streamed_digest_is_the_in_memory_one(written, monkeypatch) -> None:
    s, path = written
    monkeypatch.setattr(st, "BLOCK_ROWS", 100)
    assert st.streamed_digest(LazyFile(path)) == set_digest(s)
    assert st.streamed_digest(s[1:]) != set_digest(s)


def test_block_shuffle_order(written) -> None:
    s, _ = written
    src = st.StreamBatches(s, torch.device("cpu"), Dist(), block=50, buffer=3)
    train = np.sort(np.random.default_rng(0).permutation(len(s))[:450])
    a = src.epoch_order(train, torch.Generator().manual_seed(1))
    b = src.epoch_order(train, torch.Generator().manual_seed(1))
    c = src.epoch_order(train, torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.sort(a), train)  # every training row once
    # The shuffle buffer: a block's rows stay within a window of `buffer` blocks' rows
    # (a global shuffle would spread them over all 450 places), in no file order.
    pos = np.empty(len(s), dtype=int)
    pos[a] = np.arange(len(a))
    spans = [np.ptp(pos[train[train // 50 == b]]) for b in range(10)]
    assert max(spans) < 3 * 50 and max(spans) > 50
    assert (np.diff(a[:100]) < 0).any()


def test_streaming_resume_is_exact(written, tmp_path, monkeypatch) -> None:
    s, path = written
    monkeypatch.setattr(st, "BLOCK_ROWS", 128)

    class Stop(Exception):
        pass

    def stop(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Stop

    opts = {**OPTS, "val_fraction": 0.05}  # 25 validation spectra: no calibration, faster
    with pytest.raises(Stop):
        SpectralAutoencoder(**opts).fit(LazyFile(path), tmp_path / "cut", callback=stop)
    resumed = SpectralAutoencoder(**opts).fit(LazyFile(path), tmp_path / "cut", resume=True)
    whole = SpectralAutoencoder(**opts).fit(s, streaming=True)
    for k, v in whole.net_.state_dict().items():
        torch.testing.assert_close(resumed.net_.state_dict()[k], v, rtol=0, atol=0)
    assert (
        resumed.history_[-1]["val_deviance_per_bin"] == whole.history_[-1]["val_deviance_per_bin"]
    )


def test_streaming_fit_from_a_view_reads_no_whole_meta_table(
    written, tmp_path, monkeypatch, meta_reads
) -> None:
    """Issue 17: every DDP rank held the whole meta table; a streamed fit from a view reads
    the whole of only spec_id (digest, training ids) and the Poisson loss's flag columns, and
    the meta rows of the blocks it reads; the model is the one trained from the same file
    through a source that holds the whole table."""
    s, path = written
    monkeypatch.setattr(st, "BLOCK_ROWS", 64)
    one = {**OPTS, "epochs": 1}
    flags = set(("effective_area_known", "background_known"))
    with SpectrumSet.open(path) as view:
        model = SpectralAutoencoder(**one).fit(view, checkpoint_dir=tmp_path / "v")
        assert view._meta is None
    assert not any(c is None and r is None for c, r in meta_reads)  # never the whole table
    assert {c for c, _ in meta_reads if c is not None} <= {("spec_id",), *((f,) for f in flags)}
    blocks = [r for c, r in meta_reads if c is None]  # view[a:b]: all columns of its rows
    assert blocks and all(len(np.arange(len(s))[r]) <= 64 for r in blocks)
    assert model.training_ids_ == s.meta["spec_id"].tolist()
    held = SpectralAutoencoder(**one).fit(LazyFile(path), checkpoint_dir=tmp_path / "h")
    held_state = held.net_.state_dict()
    assert all(torch.equal(v, held_state[k]) for k, v in model.net_.state_dict().items())
    dev = [[h["val_deviance_per_bin"] for h in m.history_] for m in (model, held)]
    assert dev[0] == dev[1]
    assert load_model(tmp_path / "v").calibration_.threshold == held.calibration_.threshold


def test_rows_and_the_poisson_check_read_columns_of_a_view(written, tmp_path, meta_reads) -> None:
    from xlatent.cli.model import train_rows
    from xlatent.model.preprocess import check_loss_inputs

    s, _ = written
    t = s[:]
    t.meta["split"] = np.where(np.arange(len(t)) % 3 == 0, "test", "train")
    t.meta["background_known"] = np.arange(len(t)) != 7
    t.write(path := tmp_path / "flags.h5")
    meta_reads.clear()
    with SpectrumSet.open(path) as view:
        rows = train_rows(view, all_rows=False, say=False)
        assert isinstance(rows, st.Rows) and len(rows) == (2 * len(t)) // 3
        pd.testing.assert_frame_equal(
            rows.meta_columns(["spec_id", "split"], [1, 0]),
            t.meta[["spec_id", "split"]].iloc[[2, 1]].reset_index(drop=True),
        )
        pd.testing.assert_frame_equal(rows.meta, t.meta.iloc[rows.rows].reset_index(drop=True))
        msg = r"1 of 500 have background_known == False \(first 's0*7'"
        with pytest.raises(ValueError, match=msg.replace("s0*7", t.meta["spec_id"][7])):
            check_loss_inputs(view, "poisson")
        assert view._meta is None
    assert not any(c is None and r is None for c, r in meta_reads)
    assert {c for c, r in meta_reads if r is None} == {("split",), ("background_known",)}


def test_validation_cache_is_prepared_a_chunk_at_a_time(written, monkeypatch) -> None:
    """Issue 17 (memory): the validation rows were read and prepared all at once when the
    cache was built; now ``chunk`` rows at a time, into the same tensors."""
    s, _ = written
    src = st.StreamBatches(s, torch.device("cpu"), Dist())
    rows = np.arange(0, 500, 2)
    whole = src.tensors(rows)
    asked: list[int] = []
    real = st.StreamBatches.tensors
    monkeypatch.setattr(
        st.StreamBatches, "tensors", lambda self, r: asked.append(len(r)) or real(self, r)
    )
    first = list(src.eval_batches(rows, chunk=100))
    assert asked == [100, 100, 50]
    assert [len(b["feats"]) for b in first] == [100, 100, 50]
    for key, v in whole.items():
        assert torch.equal(torch.cat([b[key] for b in first]), v)
    again = list(src.eval_batches(rows, chunk=100))  # from the cache: nothing read
    assert asked == [100, 100, 50] and all(
        torch.equal(a["counts"], b["counts"]) for a, b in zip(first, again, strict=True)
    )
