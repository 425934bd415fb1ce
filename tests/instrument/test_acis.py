"""xlatent.instrument: the built-in ACIS response, real RMFs, count conservation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from xlatent.instrument import ARF, RMF, Response, acis_area_cm2, default_response
from xlatent.io.ogip_response import read_rmf
from xlatent.physics import models as m


def test_counts_conserved_through_diagonal_response() -> None:
    edges = np.linspace(0.3, 10.0, 201)
    rmf = RMF(edges[:-1], edges[1:], sp.identity(200, format="csr"),
              edges[:-1], edges[1:])  # fmt: skip
    arf = ARF(edges[:-1], edges[1:], np.full(200, 100.0))
    flux = m.powerlaw_bin_integral(edges, np.array([1.7]))[0]
    counts = Response(arf, rmf).fold(flux, 1000.0)
    assert np.isclose(counts.sum(), flux.sum() * 100.0 * 1000.0)


@pytest.mark.parametrize("stem", ["9774", "acisf01575_001N001_r0085", "acisf00308_000N001_r0044"])
def test_line_lands_at_right_pi_energy(real_spectra_dir: Path, stem: str) -> None:
    if stem == "9774":
        rmf_path = real_spectra_dir / "9774.rmf"
    else:
        gz = list(real_spectra_dir.glob(f"{stem}_rmf3.fits*"))
        rmf_path = gz[0]
    rmf = read_rmf(rmf_path)
    edges = np.append(rmf.energ_lo, rmf.energ_hi[-1])
    line = m.narrow_lines_to_bins(edges, np.array([1.5]), np.array([[1.0]]))[0]
    counts = Response(None, rmf).fold(line, 1.0)
    e_chan = 0.5 * (rmf.e_min + rmf.e_max)
    peak = e_chan[np.argmax(counts)]
    mean = np.sum(counts * e_chan) / counts.sum()
    assert abs(peak - 1.5) < 0.05
    assert abs(mean - 1.5) < 0.1


def test_builtin_response_shape() -> None:
    r = default_response()
    assert r.rmf.n_channels == 1024
    assert np.allclose(np.diff(r.rmf.e_min), 0.0146, atol=1e-6)
    for e, a in [(0.5, 205), (1.0, 570), (1.5, 705), (3.0, 410), (7.0, 90)]:
        assert abs(float(acis_area_cm2(e)) / a - 1) < 0.05
    # The Gaussian redistribution widens with energy: FWHM ~0.1 keV at 1, ~0.2 at 6 keV.
    for e0, fwhm in [(1.0, 0.1), (6.0, 0.2)]:
        edges = np.append(r.rmf.energ_lo, r.rmf.energ_hi[-1])
        line = m.narrow_lines_to_bins(edges, np.array([e0]), np.array([[1.0]]))[0]
        prof = Response(None, r.rmf).fold(line, 1.0)
        e_chan = 0.5 * (r.rmf.e_min + r.rmf.e_max)
        sd = np.sqrt(np.sum(prof * (e_chan - e0) ** 2) / prof.sum())
        assert abs(2.3548 * sd / fwhm - 1) < 0.15
