"""Identifiers of simulated sets: a short hash of the seed and every parameter of a call."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from xlatent.core.grid import EnergyGrid
from xlatent.instrument import Response, default_response
from xlatent.instrument.family import CHIP_TYPES, chip_rmf, effective_area_cm2
from xlatent.physics.priors import PRIORS


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _hash_arrays(parts: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in parts:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def response_digest(response: Response) -> str:
    """``builtin:acis-s`` or the SHA-256 of a response's arrays."""
    if response is default_response():
        return "builtin:acis-s"
    parts = [response.rmf.energ_lo, response.rmf.energ_hi, response.rmf.e_min,
             response.rmf.e_max, response.rmf.matrix.data, response.rmf.matrix.indices,
             response.rmf.matrix.indptr]  # fmt: skip
    if response.arf is not None:
        parts += [response.arf.energ_lo, response.arf.energ_hi, response.arf.specresp]
    return _hash_arrays(parts)


@lru_cache(maxsize=1)
def family_digest() -> str:
    """SHA-256 of the response family as the simulator sees it (both chips' RMFs and the
    effective area on a probe grid of dates and angles): a change of the family's physics
    changes the identifiers of the sets simulated with it."""
    epochs = np.array([2000.0, 2005.0, 2012.0, 2020.0, 2025.0])
    thetas = np.array([0.0, 3.0, 7.0, 10.0])
    parts = []
    for chip in CHIP_TYPES:
        e, t = (a.ravel() for a in np.meshgrid(epochs, thetas))
        parts.append(_significant(effective_area_cm2(chip, e, t)))
        m = chip_rmf(chip).matrix
        parts += [_significant(m.data), m.indices, m.indptr]
    return _hash_arrays(parts)


def _significant(values: np.ndarray, digits: int = 8) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits. The family is computed, and
    numpy's SIMD kernels differ in the last bit from one CPU to another: its digest, hence
    the simulated ``spec_id`` values, must not."""
    v = np.asarray(values, dtype=np.float64)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(np.where(v == 0, 1.0, v)))))
    return np.round(v * scale) / scale


def simulation_digest(
    *, entropy: Any, response: Response | None, grid: EnergyGrid, priors: Any, **params: Any
) -> str:
    """8 hex digits identifying a simulation: its seed entropy and every parameter that shapes
    the set (size, class fractions, response or response family, real responses, grid,
    ranges, fixed instrument, abundances, priors; not ``chunk_size``, which does not change
    the set). Simulated ``spec_id`` values are ``sim-<digest>-<index>``: the same call with
    the same seed gives the same ids, two different simulations (practically: 1 in 4e9 per
    pair) never share one."""
    record = {
        "entropy": entropy,
        "response": "family:" + family_digest() if response is None else response_digest(response),
        "grid": _hash_arrays([_significant(grid.edges_kev)]),
        "priors": "default" if priors is None or priors is PRIORS else priors,
        **params,
    }
    text = json.dumps(record, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
