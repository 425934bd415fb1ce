"""The pieces of benchmarks/scale.py: its fast PHA writer writes astropy's bytes (less the
optional CHECKSUM/DATASUM cards) and ingests to the same spectra, the process-tree memory
sampler sees a grandchild's memory, and the done-when checks say FAIL when a target is missed."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from xlatent.instrument import default_response
from xlatent.io import ogip_write
from xlatent.io.ingest import ingest_paths
from xlatent.physics.simulator import simulate

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> Iterator[tuple[ModuleType, ModuleType]]:
    try:
        yield _load("scale_pha"), _load("scale_check")
    finally:
        for name in ("scale_pha", "scale_check"):
            sys.modules.pop(name, None)


def test_fast_pha_files_are_astropys_bytes_and_ingest_the_same(
    bench: tuple[ModuleType, ModuleType], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scale_pha, _ = bench
    slow, fast, fast_gz = tmp_path / "slow", tmp_path / "fast", tmp_path / "gz"
    with monkeypatch.context() as m:  # the real writer, without the optional checksum cards
        m.setattr(ogip_write, "write_hdul", lambda p, hdul: hdul.writeto(p) or Path(p))
        s = simulate(40, seed=3, response=default_response(), write_pha=slow)
    scale_pha.write_block(fast, 40, 3)
    scale_pha.write_block(fast_gz, 40, 3, use_gzip=True)
    phas = sorted(f.name for f in slow.glob("*.pha"))
    assert len(phas) == 80 and phas == sorted(f.name for f in fast.glob("*.pha"))
    assert all((slow / f).read_bytes() == (fast / f).read_bytes() for f in phas)
    assert not (tmp_path / "gz.tmp").exists()
    got = ingest_paths([fast_gz], progress=False).spectrum_set
    assert len(got) == 40
    for k in ("counts", "background", "effective_area_cm2", "exposure_s"):
        np.testing.assert_allclose(getattr(got, k), getattr(s, k), rtol=1e-12, err_msg=k)


def test_fast_writer_refuses_per_spectrum_responses(
    bench: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    scale_pha, _ = bench
    with pytest.raises(ValueError, match="one shared response"):
        scale_pha.FastPhaDirWriter(tmp_path / "x")
    w = scale_pha.FastPhaDirWriter(tmp_path / "y", default_response())
    with pytest.raises(ValueError, match="non-negative integers"):
        w.write("a", np.full(1024, -1), np.zeros(1024), 1.0, 1.0, 1.0)


def test_peak_memory_counts_the_whole_process_tree(
    bench: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    _, check = bench
    child = "import time; b = bytearray(300_000_000); b[::4096] = b'x' * len(b[::4096]); " \
            "time.sleep(1.0)"  # fmt: skip
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    r = check.run_monitored([sys.executable, "-c", parent], {}, tmp_path / "out")
    assert r.rc == 0
    assert r.peak_rss_mb > 300  # the grandchild's 300 MB, seen through its parent
    assert (tmp_path / "out.log").exists()


def test_checks_fail_when_a_target_is_missed(bench: tuple[ModuleType, ModuleType]) -> None:
    _, check = bench

    def row(stage: str, n: int, w: int, s: float, mb: float = 500.0) -> dict:
        return {"stage": stage, "n": n, "workers": w, "seconds": s, "rc": 0,
                "us_per_spectrum": s / n * 1e6, "peak_rss_mb": mb, "wall_s": s,
                "wall_us_per_spectrum": s / n * 1e6}  # fmt: skip

    rows = [row("ingest", 100, 1, 1.0), row("ingest", 800, 1, 8.0), row("ingest", 800, 2, 4.2),
            row("encode", 100, 1, 1.0), row("encode", 800, 1, 10.0, mb=3500.0),
            row("encode", 800, 2, 6.0)]  # fmt: skip
    check.add_ratios(rows)
    lines = check.checks(rows, {"ingest": True, "encode": False}, [100, 800])
    assert "PASS ingest: us/spectrum grows 1.00x" in lines[0]
    assert lines[1].startswith("PASS ingest: 2 workers 1.90x")
    assert lines[2].startswith("PASS ingest: 1 and 2 workers give identical")
    assert lines[3].startswith("FAIL encode: us/spectrum grows 1.25x")
    assert lines[4].startswith("FAIL encode: 2 workers 1.67x")
    assert lines[5].startswith("FAIL encode: 1 and 2 workers")
    assert lines[6].startswith("FAIL memory: peak 3500 MB (encode, workers 1)")
    assert "1.25" in check.format_table(rows)
