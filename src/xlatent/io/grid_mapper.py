"""Mapping responses onto an energy grid: channel -> grid and ARF -> grid matrices, cached."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import scipy.sparse as sp

from xlatent.core import EnergyGrid
from xlatent.core.grid import bin_average, overlap_matrix
from xlatent.instrument import ARF, RMF
from xlatent.io.ogip_response import ResponseCache


class GridMapper:
    """Per-(response, grid) matrices, computed once: channel -> grid and ARF -> grid.

    Keyed by content, not by object, and holding no response: every CSC detection has its own
    arf3/rmf3, but their EBOUNDS are nearly always the same, so one channel matrix serves a
    whole archive while the responses themselves can be dropped after use (bounded memory).
    """

    #: Most ARF averages kept (each is a grid-sized vector).
    MAX_AREAS = 4096

    def __init__(self, grid: EnergyGrid, cache: ResponseCache | None = None) -> None:
        self.grid = grid
        self.cache = cache
        self._chan: dict[bytes, sp.csr_matrix] = {}
        self._area: dict[bytes, np.ndarray] = {}
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

    def area(self, arf: ARF) -> np.ndarray:
        key = self._digest(arf.energ_lo, arf.energ_hi, arf.specresp)
        with self._lock:
            if key not in self._area:
                if len(self._area) >= self.MAX_AREAS:
                    self._area.pop(next(iter(self._area)))  # oldest first
                self._area[key] = bin_average(arf.specresp, arf.energ_lo, arf.energ_hi, self.grid)
            return self._area[key]
