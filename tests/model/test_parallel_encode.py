"""Parallel encoding (issue 17): row blocks encoded by Dask workers give the serial catalogue."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xlatent.cli import app
from xlatent.core import SpectrumSet
from xlatent.model import load_model
from xlatent.model.catalog import read_latents
from xlatent.model.parallel_encode import block_seed, encode_to_file
from xlatent.physics.simulator import simulate

N, BLOCK = 300, 128


@pytest.fixture(scope="module")
def set_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enc") / "sim.h5"
    simulate(N, seed=11).write(path)
    return path


def _errors(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.endswith("_err")]


def test_two_workers_write_the_serial_catalogue(set_path: Path, tmp_path: Path) -> None:
    opts = {"n_draws": 2, "seed": 3, "block_rows": BLOCK, "progress": False}
    one = encode_to_file(set_path, tmp_path / "one.parquet", workers=1, **opts)
    two = encode_to_file(set_path, tmp_path / "two.parquet", workers=2, **opts)
    a, b = read_latents(one.path), read_latents(two.path)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert one.n == two.n == N and one.n_flagged == two.n_flagged
    # Against the whole set in memory: the same columns and latents (bit for bit: torch gives
    # the same latents in any batch); the errors of the first block only (each block seeds
    # its own redraws).
    s = SpectrumSet.read_hdf5(set_path)
    whole = load_model(None).encode_catalog(s, n_draws=2, seed=3)
    assert list(a.columns) == list(whole.columns)
    pd.testing.assert_frame_equal(a.drop(columns=_errors(a)),
                                  whole.drop(columns=_errors(whole)), check_exact=True)  # fmt: skip
    err = _errors(a)
    assert np.array_equal(a[err][:BLOCK].to_numpy(), whole[err][:BLOCK].to_numpy())
    assert not np.array_equal(a[err][BLOCK:].to_numpy(), whole[err][BLOCK:].to_numpy())
    assert np.isfinite(a[err].to_numpy()).all()


def test_fits_and_no_errors_in_one_process(set_path: Path, tmp_path: Path) -> None:
    opts = {"n_draws": 0, "block_rows": BLOCK, "progress": False, "workers": 1}
    fits = encode_to_file(set_path, tmp_path / "lat.fits", **opts)
    parq = encode_to_file(set_path, tmp_path / "lat.parquet", **opts)
    a, b = read_latents(fits.path), read_latents(parq.path)
    assert not _errors(b) and list(a.columns) == list(b.columns)
    lat = [c for c in b.columns if c.startswith("latent_")]
    assert np.array_equal(a[lat].to_numpy(), b[lat].to_numpy())
    assert a["spec_id"].tolist() == b["spec_id"].tolist()


def test_block_seeds() -> None:
    seeds = [block_seed(5, i) for i in range(50)]
    assert seeds[0] == 5 and len(set(seeds)) == 50
    assert seeds == [block_seed(5, i) for i in range(50)]
    assert block_seed(6, 1) != seeds[1]


def test_cli_encode_workers(set_path: Path, tmp_path: Path) -> None:
    """`xlatent encode --workers 2` on one block (encoded in this process): the catalogue
    of encode_catalog, errors included."""
    out = tmp_path / "cli.parquet"
    args = ["encode", str(set_path), "--out", str(out), "--workers", "2", "--error-draws", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"wrote {N} x 8 latents" in r.output
    s = SpectrumSet.read_hdf5(set_path)
    want = load_model(None).encode_catalog(s, n_draws=2, seed=0)
    pd.testing.assert_frame_equal(read_latents(out), want, check_exact=True)


def test_a_set_rewritten_at_the_same_path_is_read_again(tmp_path: Path) -> None:
    """The per-process view cache must not serve the old file's rows after it is replaced."""
    path = tmp_path / "s.h5"
    opts = {"n_draws": 0, "block_rows": BLOCK, "progress": False, "workers": 1}
    simulate(150, seed=1).write(path)
    first = read_latents(encode_to_file(path, tmp_path / "a.parquet", **opts).path)
    new = simulate(150, seed=2)
    new.write(path)
    second = read_latents(encode_to_file(path, tmp_path / "b.parquet", **opts).path)
    assert list(second["spec_id"]) == list(new.meta["spec_id"])
    assert list(first["spec_id"]) != list(second["spec_id"])
    lat = [c for c in second.columns if c.startswith("latent_") and not c.endswith("_err")]
    # Against the new file read whole (the file stores the area as float32).
    expected = load_model(None).encode_catalog(SpectrumSet.read_hdf5(path), n_draws=0)
    assert np.array_equal(second[lat].to_numpy(), expected[lat].to_numpy())


def test_blocks_read_their_own_meta_rows_only(
    set_path: Path, tmp_path: Path, monkeypatch, meta_reads
) -> None:
    """Issue 17: each worker (and the driver) held the whole meta table. The driver checks
    the meta block by block and the blocks read their own rows; nothing reads a whole column
    (the open checks spec_id by blocks too); the catalogue copies every meta column."""
    import xlatent.core.hdf5_meta as hdf5_meta
    import xlatent.model.parallel_encode as pe

    calls = meta_reads
    monkeypatch.setattr(hdf5_meta, "CHECK_ROWS", 200)  # the driver's check: blocks of 200
    opts = {"n_draws": 0, "block_rows": BLOCK, "progress": False, "workers": 1}
    done = encode_to_file(set_path, tmp_path / "lat.parquet", **opts)
    assert all(r is not None for _, r in calls)  # never a whole column, nor the table
    assert {c for c, _ in calls} == {None, ("spec_id",)}
    rows = [r for _, r in calls]
    assert rows and all(isinstance(r, slice) and r.stop - r.start <= 200 for r in rows)
    assert slice(BLOCK, 2 * BLOCK) in rows and slice(2 * BLOCK, N) in rows
    assert pe._CACHE["view"][1]._meta is None
    got = read_latents(done.path)
    meta = SpectrumSet.read_hdf5(set_path).meta
    pd.testing.assert_frame_equal(got[list(meta.columns)], meta, check_exact=True)


class _ThreadsSeen:
    """A stand-in model that records torch's thread count when it encodes."""

    latent_dim = 8
    calibration_ = None

    def __init__(self) -> None:
        self.seen: list[int] = []

    def encode_catalog(self, block: SpectrumSet, n_draws: int, seed: int) -> pd.DataFrame:
        import torch

        self.seen.append(torch.get_num_threads())
        return pd.DataFrame({"spec_id": block.meta["spec_id"].astype(str).to_numpy()})


@pytest.mark.parametrize("workers", [1, 2])
def test_in_process_encoding_runs_one_torch_thread_a_worker(
    set_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """--workers N means N cores: in this process (1 worker, or a set of one block) torch
    runs N threads while encoding, and its setting is restored after."""
    import torch

    from xlatent.model import parallel_encode

    fake = _ThreadsSeen()
    monkeypatch.setattr(parallel_encode, "load_cached", lambda model_dir: fake)
    monkeypatch.setattr(parallel_encode, "default_workers", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        encode_to_file(set_path, tmp_path / "t.parquet", workers=workers, progress=False)
        assert fake.seen == [workers]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_pool_workers_start_with_torch_loaded_on_one_thread(set_path: Path, tmp_path: Path) -> None:
    """Local workers are processes forked with the encoder's modules imported (not
    scikit-learn: it is not needed to encode), torch, BLAS and OpenMP on one thread, glibc's
    malloc defaults (Dask's MALLOC_TRIM_THRESHOLD_ made torch's buffers mmapped afresh: twice
    the CPU) and no Dask; a pool given to encode_to_file is used and left open (a second call
    reuses it)."""
    import json
    import subprocess
    import sys
    import textwrap

    from xlatent.core.parallel import Pool
    from xlatent.model.parallel_encode import PRELOAD

    # In a fresh interpreter: the preload acts only while the process's forkserver has not
    # started, and earlier tests in this process may have started it.
    script = textwrap.dedent("""
        import json, os
        from xlatent.core.parallel import Pool
        from xlatent.model.parallel_encode import PRELOAD

        def state():
            import os, sys
            import torch
            from threadpoolctl import threadpool_info
            return (os.getpid(), "sklearn" in sys.modules, "distributed" in sys.modules,
                    os.environ["OMP_NUM_THREADS"], torch.get_num_threads(),
                    sorted({lib["num_threads"] for lib in threadpool_info()}),
                    "MALLOC_TRIM_THRESHOLD_" in os.environ)

        if __name__ == "__main__":
            with Pool(3, preload=PRELOAD) as pool:  # two processes and this one
                seen = [pool.submit(state).result() for _ in range(4)]
            print(json.dumps([os.getpid(), "OMP_NUM_THREADS" in os.environ, seen]))
    """)
    probe = tmp_path / "probe.py"
    probe.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True,
                         timeout=300, check=True, env=env).stdout  # fmt: skip
    me, env_here, seen = json.loads(out.strip().splitlines()[-1])
    assert not env_here  # the one-thread settings went to the workers only
    assert me not in {s[0] for s in seen}  # run by the worker processes
    assert [s[1:] for s in seen] == [[False, False, "1", 1, [1], False]] * 4, seen
    opts = {"n_draws": 2, "seed": 3, "block_rows": BLOCK, "progress": False}
    with Pool(2, preload=PRELOAD) as pool:
        two = encode_to_file(set_path, tmp_path / "a.parquet", pool=pool, **opts)
        again = encode_to_file(set_path, tmp_path / "b.parquet", pool=pool, **opts)
        assert pool.submit(os.getpid).result() != os.getpid()  # left open
    one = encode_to_file(set_path, tmp_path / "one.parquet", workers=1, **opts)
    a = read_latents(one.path)
    for done in (two, again):
        pd.testing.assert_frame_equal(read_latents(done.path), a, check_exact=True)


def test_cli_starts_workers_only_for_more_than_one_block(set_path: Path) -> None:
    from xlatent.cli.parallel_options import ENCODE_BLOCK_ROWS, ENCODE_PRELOAD, encode_pool
    from xlatent.model.parallel_encode import BLOCK_ROWS, PRELOAD

    assert (ENCODE_BLOCK_ROWS, ENCODE_PRELOAD) == (BLOCK_ROWS, PRELOAD)
    assert encode_pool(set_path, 2, None) is None  # N < one block: in this process
    assert encode_pool(set_path, 1, None) is None


def test_importing_the_encoder_skips_scikit_learn() -> None:
    """A worker (and the driver) imports only what encoding needs: scikit-learn's ~1.5 s
    import is for PCA fitting and loading."""
    import subprocess
    import sys

    code = "import sys, xlatent.model.parallel_encode; print('sklearn' in sys.modules)"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_cli_encodes_on_the_workers_it_started(
    set_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI starts the pool before loading the model and encode_to_file runs on it (here
    forced for a small set): the catalogue of one process, and the pool is closed after."""
    from xlatent.cli import parallel_options
    from xlatent.core import parallel

    pools: list = []

    class Recorded(parallel.Pool):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.used = 0
            pools.append(self)

        def ready(self) -> bool:
            self.used += 1
            return super().ready()

    monkeypatch.setattr(parallel_options, "ENCODE_BLOCK_ROWS", 128)
    monkeypatch.setattr(parallel, "Pool", Recorded)
    out = tmp_path / "cli.parquet"
    args = ["encode", str(set_path), "--out", str(out), "--workers", "2", "--error-draws", "2"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert len(pools) == 1 and pools[0].used  # used
    assert pools[0]._impl._executor is None  # then closed
    want = encode_to_file(set_path, tmp_path / "one.parquet", workers=1, n_draws=2,
                          progress=False)  # fmt: skip
    pd.testing.assert_frame_equal(read_latents(out), read_latents(want.path), check_exact=True)


def test_the_seal_is_hashed_once_per_file_version(tmp_path: Path, monkeypatch) -> None:
    """The driver checks the seal (the SHA-256 of the whole file) once; a worker told the
    stamp of the version it checked opens without hashing it again, and any other version
    (the file rewritten since) is checked."""
    import xlatent.core.seal as seal
    import xlatent.model.parallel_encode as pe

    path = tmp_path / "s.h5"
    simulate(60, seed=2).write(path)
    hashed: list[str] = []
    real = seal.check_seal
    monkeypatch.setattr(seal, "check_seal", lambda p: (hashed.append(str(p)), real(p))[1])
    monkeypatch.setattr(pe, "_CACHE", {})
    pe.open_view(path)  # the driver: checked
    assert len(hashed) == 1
    stamp = pe._stamp(str(path))
    monkeypatch.setattr(pe, "_CACHE", {})  # a worker: its own process, its own cache
    assert len(pe.read_rows(path, 0, 10, stamp)) == 10
    assert len(hashed) == 1
    monkeypatch.setattr(pe, "_CACHE", {})
    simulate(60, seed=3).write(path)  # another version at the same path
    pe.read_rows(path, 0, 10, stamp)
    assert len(hashed) == 2
    pe._CACHE["view"][1].close()
