"""The pieces of benchmarks/peer_fit.py (Sherpa against latents): the skip path without
Sherpa, the recovery metrics, and, with Sherpa, that a PHA written by xlatent.io.ogip_write
loads with its background and response and that the W-stat fit with xlatent's absorption
as a Sherpa user model recovers the N_H and Gamma of a noiseless absorbed power law."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from xlatent.instrument.acis import default_response
from xlatent.io.ogip_write import PhaDirWriter
from xlatent.physics.absorption import cross_section_cm2
from xlatent.physics.models import powerlaw_bin_integral

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_fit.py"


@pytest.fixture(scope="module")
def peer() -> Iterator[ModuleType]:
    name = "xlatent_peer_fit"
    spec = importlib.util.spec_from_file_location(name, BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclass resolves annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def test_without_sherpa_it_says_skipped_and_exits_0(
    peer: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sherpa", None)  # import sherpa -> ImportError
    assert peer.main(["--n-fit", "1"]) == 0
    assert capsys.readouterr().out.strip() == peer.SKIP_MESSAGE
    assert peer.SKIP_MESSAGE.startswith("skipped: Sherpa not installed")


def test_recovery_metrics(peer: ModuleType) -> None:
    nh_true = np.array([1.0, 1.0, 0.01, 10.0])
    nh_est = np.array([1.0, 10.0, 0.0, 1.0])  # 0 dex, 1 dex, pegged (floor 1e-3: 1 dex), 1 dex
    m = peer.recovery(nh_true, nh_est, np.array([2.0, 2, 2, 2]), np.array([2.1, 1.7, 2, 2]))
    assert m["n"] == 4
    assert m["median_abs_dlog_nh_dex"] == pytest.approx(1.0)
    assert m["frac_off_1dex"] == 0.0  # exactly 1 dex is not "more than 1 dex"
    assert m["median_abs_dgamma"] == pytest.approx(0.05)
    m = peer.recovery(nh_true, nh_est, nh_true, nh_true, nh_floor_1e22=1e-4)
    assert m["frac_off_1dex"] == 0.25  # the pegged fit is now 2 dex off


def test_sherpa_recovers_a_noiseless_absorbed_power_law(peer: ModuleType, tmp_path: Path) -> None:
    ui = peer.sherpa_ui()
    if ui is None:
        pytest.skip("Sherpa not installed")
    resp = default_response()
    lo, hi = resp.rmf.energ_lo, resp.rmf.energ_hi
    nh_1e22, gamma, exposure_s = 2.0, 1.8, 50_000.0
    edges = np.append(lo, hi[-1])
    photons = powerlaw_bin_integral(edges, np.array([gamma]), 2e-2)[0]  # ~170,000 counts
    photons *= np.exp(-nh_1e22 * 1e22 * cross_section_cm2(0.5 * (lo + hi)))
    source = resp.fold(photons, exposure_s)
    bkg_region = np.full(resp.rmf.n_channels, 2.0)  # background region 10x the source's
    writer = PhaDirWriter(tmp_path, resp)
    writer.write("src", np.round(source + bkg_region / 10), bkg_region, exposure_s, 1.0, 10.0)

    # Sherpa evaluates the user model like xlatent's absorption on the response's grid.
    xabs = peer.absorption_model("t")
    xabs.nh = 0.5
    assert np.allclose(xabs(lo, hi), np.exp(-0.5e22 * cross_section_cm2(0.5 * (lo + hi))))

    fit = peer.fit_pha(ui, tmp_path / "src.pha")
    assert fit.ok, fit.message
    assert ui.get_data(1).exposure == pytest.approx(exposure_s)
    assert ui.get_bkg(1).counts.sum() == pytest.approx(bkg_region.sum())
    assert fit.nh_1e22 == pytest.approx(nh_1e22, rel=0.01)
    assert fit.gamma == pytest.approx(gamma, abs=0.01)

    missing = peer.fit_pha(ui, tmp_path / "absent.pha")
    assert not missing.ok and np.isnan(missing.nh_1e22)
