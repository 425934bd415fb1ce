"""What a set's ``effective_area_cm2`` holds, as its provenance records it.

Since 2026-12-04 the steps that make a set's areas (``simulate``, ``ingest``) fold each ARF
through its RMF onto the grid (:mod:`xlatent.instrument.folded_area`) and say so with
``area`` = :data:`AREA_DEFINITION` in their provenance record. Sets made before hold the ARF's
plain mean on each grid bin, which models trained since do not expect: :func:`plain_mean_areas`
finds them so the model can say so (a set built by hand from arrays has no such step and is
taken as it is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["AREA_DEFINITION", "AREA_STEPS", "plain_mean_areas"]

#: The ``area`` provenance value of folded areas (the reference power law's photon index:
#: :data:`xlatent.instrument.folded_area.REFERENCE_GAMMA`).
AREA_DEFINITION = "folded:gamma=1.7"
#: Provenance steps that make a set's areas.
AREA_STEPS = ("simulate", "ingest")


def plain_mean_areas(provenance: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a ``simulate`` or ``ingest`` step of ``provenance`` made its areas another way
    than :data:`AREA_DEFINITION` (before 2026-12-04: the ARF's plain bin mean)."""
    return any(
        isinstance(p, Mapping) and p.get("step") in AREA_STEPS and p.get("area") != AREA_DEFINITION
        for p in provenance
    )
