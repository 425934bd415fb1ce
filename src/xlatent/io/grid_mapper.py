"""Mapping responses onto an energy grid: channel -> grid matrices and folded areas, cached."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import scipy.sparse as sp

from xlatent.core import EnergyGrid
from xlatent.core.grid import bin_average, overlap_matrix
from xlatent.instrument import ARF, RMF
from xlatent.instrument.folded_area import folded_area, photons_per_grid_bin
from xlatent.instrument.response import specresp_on
from xlatent.io.ogip_response import ResponseCache


class GridMapper:
    """Per-(response, grid) matrices, computed once: channel -> grid, and each RMF's fold of
    an ARF onto the grid (:mod:`xlatent.instrument.folded_area`).

    Channel matrices and ARF averages are keyed by content, not by object, and hold no
    response: every CSC detection has its own arf3/rmf3, but their EBOUNDS are nearly always
    the same, so one channel matrix serves a whole archive while the responses themselves can
    be dropped after use (bounded memory).
    """

    #: Most ARF averages kept (each is a grid-sized vector).
    MAX_AREAS = 4096

    def __init__(self, grid: EnergyGrid, cache: ResponseCache | None = None) -> None:
        self.grid = grid
        self.cache = cache
        self._chan: dict[bytes, sp.csr_matrix] = {}
        self._average: dict[bytes, np.ndarray] = {}
        self._in_bin: dict[bytes, np.ndarray] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(*arrays: np.ndarray) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for a in arrays:
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.digest()

    def channel_matrix(self, rmf: RMF) -> sp.csr_matrix:
        key = self._digest(rmf.e_min, rmf.e_max)
        with self._lock:
            if key not in self._chan:
                self._chan[key] = overlap_matrix(rmf.e_min, rmf.e_max, self.grid.edges_kev)
            return self._chan[key]

    def arf_average(self, arf: ARF) -> np.ndarray:
        """The ARF's own mean on each grid bin (cm^2; 0 outside it): what a file's area is
        checked on, before an RMF spreads it."""
        key = self._digest(arf.energ_lo, arf.energ_hi, arf.specresp)
        with self._lock:
            if key not in self._average:
                if len(self._average) >= self.MAX_AREAS:
                    self._average.pop(next(iter(self._average)))  # oldest first
                self._average[key] = bin_average(
                    arf.specresp, arf.energ_lo, arf.energ_hi, self.grid
                )
            return self._average[key]

    def area(self, arf: ARF, rmf: RMF) -> np.ndarray:
        """The ARF folded through the RMF onto the grid (cm^2); an ARF on other energy bins
        than the RMF's is interpolated onto the RMF's bin centres (0 outside its range)."""
        key = self._digest(rmf.energ_lo, rmf.energ_hi)
        with self._lock:
            if key not in self._in_bin:
                self._in_bin[key] = photons_per_grid_bin(rmf.energ_lo, rmf.energ_hi, self.grid)
            in_bin = self._in_bin[key]
        area, chan = specresp_on(arf, rmf), self.channel_matrix(rmf)
        return folded_area(area, rmf, self.grid, channel_matrix=chan, in_bin=in_bin)
