"""Hostile command lines: one ``error:`` line and an exit status, never a traceback (issue 10).

Every command runs inside ``xlatent.clitools.cli_errors``; option values and outputs are checked
before any work (the ``no_work`` fixture makes every implementation fail loudly if reached).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xlatent.cli import app

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(*args: object, env: dict | None = None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_one_error(result, code: int, text: str = "") -> str:
    """Exit ``code``, exactly one ``error:`` line on stderr (containing ``text``), no traceback."""
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.stderr.splitlines() if re.match(r"(?i)error:", ln)]
    assert len(lines) == 1, result.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return lines[0]


@pytest.fixture(scope="module")
def sim_set(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "s.h5"
    result = run("simulate", "--n", "40", "--seed", "1", "--out", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Every command's implementation raises if reached: checks must come before any work."""
    import xlatent.analysis
    import xlatent.analysis.explore
    import xlatent.analysis.similar
    import xlatent.io.csc.download
    import xlatent.io.csc.query
    import xlatent.io.ingest
    import xlatent.model
    import xlatent.physics.simulator
    import xlatent.pipeline
    import xlatent.report
    from xlatent.core import SpectrumSet

    def work(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    for module, name in [
        (xlatent.physics.simulator, "simulate"),
        (xlatent.io.ingest, "ingest_paths"),
        (xlatent.model, "load_model"),
        (xlatent.analysis, "evaluate"),
        (xlatent.analysis, "evaluate_table"),
        (xlatent.analysis.explore, "explore"),
        (xlatent.analysis.similar, "similar"),
        (xlatent.report, "render_report"),
        (xlatent.pipeline, "run_demo"),
        (xlatent.io.csc.query, "query_csc"),
        (xlatent.io.csc.query, "read_catalog"),
        (xlatent.io.csc.download, "download_spectra"),
    ]:
        monkeypatch.setattr(module, name, work)
    monkeypatch.setattr(SpectrumSet, "read", work)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """An existing regular file, an existing directory and a FIFO to aim outputs at."""
    (tmp_path / "regular.txt").write_text("not a directory")
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    return {
        "tmp": str(tmp_path),
        "reg": str(tmp_path / "regular.txt"),
        "dir": str(tmp_path / "adir"),
        "fifo": str(tmp_path / "fifo"),
    }


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ------------------------------------------------------------------- bad option values
USAGE = [  # exit 2: the value itself is wrong
    ("simulate --out {tmp}/a.h5 --realism-out {tmp}/r.json", "--realism-out"),
    ("simulate --out {tmp}/a.h5 --snr-min 0", "--snr-min"),
    ("simulate --n 0", "--n"),
    ("simulate --counts-min 0", "--counts-min"),
    ("simulate --counts-max -5", "--counts-max"),
    ("simulate --counts-min 100 --counts-max 50", "--counts-max"),
    ("simulate --class-mix uniform", "--class-mix"),
    ("simulate --seed -1", "--seed"),
    ("simulate --arf {reg}", "--arf"),
    ("train {set} --out {tmp}/m --device tpu", "--device"),
    ("train {set} --out {tmp}/m --latent-dim -3", "--latent-dim"),
    ("train {set} --out {tmp}/m --latent-dim 0", "--latent-dim"),
    ("train {set} --out {tmp}/m --epochs 0", "--epochs"),
    ("train {set} --out {tmp}/m --model vae", "--model"),
    ("train {set} --out {tmp}/m --loss l1", "--loss"),
    ("train {set} --out {tmp}/m --max-time 0", "--max-time"),
    ("encode {set} --model {dir} --format csv", "--format"),
    ("evaluate {set} --latents {reg} --max-points 0", "--max-points"),
    ("evaluate {set} --latents {reg} --max-points 9", "--max-points"),
    ("evaluate {set} --latents {reg} --projection isomap", "--projection"),
    ("train {set} --out {tmp}/m --option latent_noise", "--option"),
    ("train {set} --out {tmp}/m --option latent_nois=0.2", "no such option"),
    ("train {set} --out {tmp}/m --option latent_noise=-1", "latent_noise must be"),
    ("train {set} --out {tmp}/m --option consistency=lots", "consistency must be a number"),
    ("train {set} --out {tmp}/m --option augment=rotate", "augment must be one of"),
    ("train {set} --out {tmp}/m --option photon_channel=maybe", "photon_channel must be"),
    ("train {set} --out {tmp}/m --option epochs=3", "use --epochs"),
    ("train {set} --out {tmp}/m --model pca --option consistency=0", "PCA baseline"),
    ("demo --out {tmp}/d --n 10", "--n"),
    ("demo --out {tmp}/d --epochs 0", "--epochs"),
    ("ingest {reg} --out {tmp}/i.h5 --bins 0", "--bins"),
    ("ingest {reg} --out {tmp}/i.h5 --emin 0", "--emin"),
    ("ingest {reg} --out {tmp}/i.h5 --emin 2 --emax 1", "--emax"),
    ("csc query --out {tmp}/c.fits --top 0", "--top"),
    ("csc query --out {tmp}/c.fits --max-theta 0", "--max-theta"),
    ("csc download {reg} --dir {tmp}/d --workers 0", "--workers"),
    ("csc download {reg} --dir {tmp}/d --batch-size 0", "--batch-size"),
    ("similar {reg} x --k 0", "--k"),
    ("explore {reg} --max-points 9", "--max-points"),
    ("explore {reg} --projection isomap", "--projection"),
]

MISSING = [  # exit 1: an input that is not there
    ("simulate --out {tmp}/a.h5 --compare-td {tmp}/TD.csv", "--compare-td"),
    ("simulate --out {tmp}/a.h5 --rmf {tmp}/x.rmf", "--rmf"),
    ("simulate --out {tmp}/a.h5 --arf {tmp}/x.arf --rmf {reg}", "--arf"),
    ("evaluate {set} --latents {tmp}/lat.parquet --out {tmp}/ev", "--latents"),
    ("evaluate {set} --latents {reg} --model {tmp}/m --out {tmp}/ev", "--model"),
    ("evaluate {set} --latents {reg} --pca {reg} --out {tmp}/ev", "--pca"),
    ("encode {set} --model {tmp}/m --out {tmp}/l.parquet", "--model"),
    ("encode {set} --model {reg} --out {tmp}/l.parquet", "not a directory"),
    ("reconstruct {set} --model {tmp}/m --out {tmp}/r.h5", "--model"),
    ("ingest {reg} --out {tmp}/i.h5 --catalog {tmp}/cat.fits", "--catalog"),
    ("ingest {reg} --out {tmp}/i.h5 --labels {dir}", "--labels"),
    ("similar {tmp}/l.parquet x", "LATENTS"),
    ("similar {reg} x --set {tmp}/s.h5", "--set"),
    ("explore {tmp}/l.parquet", "LATENTS"),
    ("explore {reg} --set {tmp}/s.h5", "--set"),
    ("explore {reg} --model {tmp}/m", "--model"),
    ("report {dir} --explorer {tmp}/e.html", "--explorer"),
]


@pytest.mark.parametrize(("cmd", "text"), USAGE + MISSING)
def test_bad_option_values(cmd, text, sim_set, places, no_work) -> None:
    tmp = Path(places["tmp"])
    before = listing(tmp)
    result = run(*cmd.format(set=sim_set, **places).split())
    assert_one_error(result, 2 if (cmd, text) in USAGE else 1, text)
    assert listing(tmp) == before  # nothing written, not even an empty directory


def test_cuda_requested_without_cuda(sim_set, tmp_path, no_work, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run("train", sim_set, "--out", tmp_path / "m", "--device", "cuda")
    assert_one_error(result, 1, "--device cuda: no CUDA device")
    assert not (tmp_path / "m").exists()


# -------------------------------------------------------------------- bad --out paths
FILE_OUTPUTS = [
    "simulate --out {out}",
    "ingest {reg} --out {out}",
    "encode {set} --model {dir} --out {out}",
    "reconstruct {set} --model {dir} --out {out}",
    "report {dir} --out {out}",
    "csc query --out {out}",
    "explore {reg} --out {out}",
    "similar {reg} x --csv {out}",
    "similar {reg} x --set {reg} --figure {out}",
]
DIR_OUTPUTS = [
    "simulate --out {tmp}/s.h5 --write-pha {out}",
    "train {set} --out {out}",
    "train {set} --model pca --out {out}",
    "evaluate {set} --latents {reg} --out {out}",
    "evaluate-table {reg} --out {out}",
    "demo --out {out}",
    "csc download {reg} --dir {out}",
]
BAD_FILES = [  # (target, what the one error line says)
    ("/proc/xlatent-test/x.out", "cannot write in /proc"),
    ("{dir}", "is a directory"),
    ("{reg}/x.out", "is not a directory"),
    ("{fifo}", "not a regular file"),
]
BAD_DIRS = [
    ("/proc/xlatent-test", "cannot write in /proc"),
    ("{reg}", "exists and is not a directory"),
    ("{reg}/sub", "is not a directory"),
]


@pytest.mark.parametrize(
    ("cmd", "target", "text"),
    [(c, t, x) for c in FILE_OUTPUTS for t, x in BAD_FILES]
    + [(c, t, x) for c in DIR_OUTPUTS for t, x in BAD_DIRS],
)
def test_unwritable_outputs_refused_before_any_work(
    cmd, target, text, sim_set, places, no_work
) -> None:
    if target.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    tmp = Path(places["tmp"])
    before = listing(tmp)
    out = target.format(**places)
    result = run(*cmd.format(set=sim_set, out=out, **places).split())
    line = assert_one_error(result, 1, text)
    assert str(Path(out)) in line or out in line  # the path is named
    assert listing(tmp) == before
    assert not Path(out).is_dir() or out == places["dir"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path: Path, no_work) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = run("simulate", "--n", "40", "--out", ro / "sub" / "s.h5")
        assert_one_error(result, 1, f"cannot write in {ro}")
    finally:
        ro.chmod(0o755)


def test_ingest_checks_out_before_reading(tmp_path: Path, places, monkeypatch) -> None:
    import xlatent.io.ingest

    calls = []
    monkeypatch.setattr(xlatent.io.ingest, "ingest_paths", lambda *a, **k: calls.append(a))
    result = run("ingest", places["reg"], "--out", Path(places["reg"]) / "x.h5")
    assert_one_error(result, 1, "--out")
    assert calls == []


# ------------------------------------------------------ unexpected exceptions, Ctrl-C, --debug
def _raise(exc: BaseException):
    def work(*args, **kwargs):
        raise exc

    return work


@pytest.fixture
def boom(monkeypatch):
    """Make ``simulate``'s implementation raise a given exception (the CLI simulates in
    blocks; the Python API in one go)."""
    import xlatent.physics.simulator

    def arm(exc: BaseException) -> None:
        monkeypatch.setattr(xlatent.physics.simulator, "simulate", _raise(exc))
        monkeypatch.setattr(xlatent.physics.simulator, "simulate_blocks", _raise(exc))

    return arm


def test_unexpected_exception_is_an_internal_error_line(boom, tmp_path: Path) -> None:
    boom(RuntimeError("kaboom\nsecond line"))
    result = run("simulate", "--n", "40", "--out", tmp_path / "s.h5")
    line = assert_one_error(result, 1)
    assert line == (
        "error: internal error: RuntimeError: kaboom; second line "
        "(run with --debug for the traceback)"
    )
    assert not (tmp_path / "s.h5").exists()


def test_debug_option_and_env_reraise(boom, tmp_path: Path) -> None:
    boom(RuntimeError("kaboom"))
    result = run("--debug", "simulate", "--n", "40", "--out", tmp_path / "s.h5")
    assert isinstance(result.exception, RuntimeError) and result.exit_code == 1
    assert "error:" not in result.stderr
    result = run("simulate", "--out", tmp_path / "s.h5", env={"XLATENT_DEBUG": "1"})
    assert isinstance(result.exception, RuntimeError)
    result = run("simulate", "--out", tmp_path / "s.h5", env={"XLATENT_DEBUG": "0"})
    assert_one_error(result, 1, "internal error: RuntimeError: kaboom")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            PermissionError(13, "Permission denied", "/data/x.h5"),
            "error: /data/x.h5: Permission denied",
        ),
        (OSError(28, "No space left on device"), "error: No space left on device"),
        (ValueError("n must be at least 1"), "error: n must be at least 1"),
    ],
)
def test_expected_errors_are_plain_lines(boom, tmp_path, exc, expected) -> None:
    boom(exc)
    line = assert_one_error(run("simulate", "--out", tmp_path / "s.h5"), 1)
    assert line == expected


def test_xlatent_errors_from_any_layer(boom, tmp_path: Path) -> None:
    from xlatent.core import InputError, SchemaError
    from xlatent.model.checkpoint import CheckpointError

    for exc in (
        InputError("a.h5", "truncated HDF5"),
        SchemaError("schema 9 is newer"),
        CheckpointError("m/: weights missing"),
    ):
        boom(exc)
        line = assert_one_error(run("simulate", "--out", tmp_path / "s.h5"), 1)
        assert line == f"error: {exc}"


def test_keyboard_interrupt_exits_130(boom, tmp_path: Path) -> None:
    boom(KeyboardInterrupt())
    result = run("simulate", "--out", tmp_path / "s.h5")
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted"
    assert "Traceback" not in result.output


def test_csc_commands_share_the_handler(tmp_path: Path, monkeypatch) -> None:
    import xlatent.io.csc.query

    monkeypatch.setattr(xlatent.io.csc.query, "query_csc", _raise(KeyError("obsid")))
    result = run("csc", "query", "--out", tmp_path / "c.fits", "--url", "http://127.0.0.1:9")
    assert_one_error(result, 1, "internal error: KeyError: 'obsid'")


def test_broken_pipe_is_left_to_typer() -> None:
    from xlatent.clitools import cli_errors

    with pytest.raises(BrokenPipeError), cli_errors():
        raise BrokenPipeError(32, "Broken pipe")


# ------------------------------------------------------------------ real processes, help
def _python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env,
        timeout=120,
    )  # fmt: skip


BOOM_SCRIPT = """
import sys
import xlatent.physics.simulator as sim
def boom(*a, **k):
    raise RuntimeError("kaboom")
sim.simulate = sim.simulate_blocks = boom
from xlatent.cli import app
app(sys.argv[1:], prog_name="xlatent")
"""


def test_traceback_only_with_debug_in_a_real_process(tmp_path: Path) -> None:
    out = str(tmp_path / "s.h5")
    plain = _python(BOOM_SCRIPT, "simulate", "--out", out)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        "error: internal error: RuntimeError: kaboom (run with --debug for the traceback)"
    ]
    debug = _python(BOOM_SCRIPT, "--debug", "simulate", "--out", out)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "kaboom" in debug.stderr


def test_help_is_fast_and_documents_exit_codes() -> None:
    code = (
        "import sys\nfrom xlatent.cli import app\n"
        "try:\n    app(['--help'], prog_name='xlatent')\n"
        "except SystemExit as e:\n"
        "    heavy = ('torch', 'xlatent.physics', 'xlatent.core', 'pandas', 'requests')\n"
        "    print('exit', e.code, [m for m in heavy if m in sys.modules])\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "Exit status: 0 success" in text and "130 interrupted" in text
    assert "--debug" in text and "XLATENT_DEBUG" in text
    assert text.endswith("exit 0 []")  # no heavy imports for --help


def test_usage_errors_keep_exit_2() -> None:
    result = run("simulate", "--no-such-option")
    assert result.exit_code == 2 and "No such option" in result.output
    assert run("train").exit_code == 2  # missing SET argument
    assert run("--version").exit_code == 0


def test_demo_floor_matches_the_pipeline(tmp_path: Path) -> None:
    import xlatent.cli.evaluation
    import xlatent.pipeline

    assert xlatent.cli.evaluation.DEMO_MIN_N == xlatent.pipeline.DEMO_MIN_N
    with pytest.raises(ValueError, match="at least"):
        xlatent.pipeline.run_demo(tmp_path / "d", n=xlatent.pipeline.DEMO_MIN_N - 1)
    with pytest.raises(ValueError, match="epochs"):
        xlatent.pipeline.run_demo(tmp_path / "d", n=xlatent.pipeline.DEMO_MIN_N, epochs=0)
    assert not (tmp_path / "d").exists()


def test_good_commands_still_work(sim_set: Path, tmp_path: Path) -> None:
    model = tmp_path / "pca"
    result = run("train", sim_set, "--model", "pca", "--latent-dim", "2", "--out", model)
    assert result.exit_code == 0, result.output
    lat = tmp_path / "sub" / "lat.parquet"  # parents are created
    result = run("encode", sim_set, "--model", model, "--out", lat)
    assert result.exit_code == 0, result.output
    assert lat.is_file() and "x 2 latents" in result.output


def test_train_options_reach_the_model(sim_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = run("train", sim_set, "--out", out, "--epochs", "1", "--latent-dim", "2",
                 "--option", "latent_noise=0", "--option", "consistency=0.5",
                 "--option", "augment=area+thin", "--option", "photon_channel=false",
                 "--option", "d_model=32")  # fmt: skip
    assert result.exit_code == 0, result.output
    import xlatent.model

    m = xlatent.model.SpectralAutoencoder.load(out)
    assert (m.latent_noise, m.consistency, m.augment) == (0.0, 0.5, "area+thin")
    assert (m.photon_channel, m.d_model, m.latent_noise_counts) == (False, 32, 300.0)


def test_logged_tracebacks_become_one_warning_line(monkeypatch, tmp_path: Path) -> None:
    import logging

    import xlatent.physics.simulator

    def recovering(*args, **kwargs):
        try:
            raise ValueError("n_samples=1 is too few")
        except ValueError:
            import traceback

            logging.getLogger("xlatent.analysis.x").warning(
                "analysis maps failed:\n%s", traceback.format_exc()
            )
        raise ValueError("then it gave up")

    monkeypatch.setattr(xlatent.physics.simulator, "simulate", recovering)
    monkeypatch.setattr(xlatent.physics.simulator, "simulate_blocks", recovering)
    result = run("simulate", "--out", tmp_path / "s.h5")
    assert_one_error(result, 1, "then it gave up")
    assert "warning: analysis maps failed: ValueError: n_samples=1 is too few" in result.stderr
    debug = run("--debug", "simulate", "--out", tmp_path / "s.h5")
    assert "Traceback (most recent call last)" in debug.stderr  # the logged one, in full


def test_failed_run_leaves_no_empty_output_directory(sim_set: Path, tmp_path: Path) -> None:
    junk = tmp_path / "lat.parquet"
    junk.write_text("not parquet")
    out = tmp_path / "ev"
    result = run("evaluate", sim_set, "--latents", junk, "--out", out)
    assert_one_error(result, 1, "lat.parquet")
    assert not out.exists()
    out.mkdir()  # a directory that was there before stays
    result = run("evaluate", sim_set, "--latents", junk, "--out", out)
    assert result.exit_code == 1 and out.is_dir()
