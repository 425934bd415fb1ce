"""The project's vocabulary: classes and groupings, CSC bands, reference study, latent names.

Every module takes these facts from here; none spells them out again.

Two class orders are in use and both are load-bearing:

- :data:`CLASSES`, the canonical order: tables, confusion matrices and the analyses (it is the
  row/column order of ``metrics.json``'s confusion matrices).
- :data:`CLASSES_BY_TD_SIZE`, largest class of the labelled CSC table first: the order in which
  the simulator draws classes and parameters, and the rows of the realism check. Changing it
  changes every seeded simulation.
"""

from __future__ import annotations

from typing import Any

#: The eight CSC source classes of the reference study and of ``TD.csv``, canonical order.
CLASSES: tuple[str, ...] = ("AGN", "CV", "HM-STAR", "LM-STAR", "HMXB", "LMXB", "NS", "YSO")

#: Stellar-mass compact objects, contrasted with AGN in the reference study ("AGN vs compact").
COMPACT: tuple[str, ...] = ("HMXB", "LMXB", "NS")

#: Class sizes in the labelled CSC table (Yang et al. 2022, ``TD.csv``): the simulator's
#: "realistic" class mix.
TD_CLASS_COUNTS: dict[str, int] = {
    "AGN": 1390, "YSO": 1004, "LM-STAR": 207, "HM-STAR": 118,
    "NS": 87, "LMXB": 65, "CV": 44, "HMXB": 26,
}  # fmt: skip

#: :data:`CLASSES` ordered by their size in ``TD.csv``, largest first (the simulator's order).
CLASSES_BY_TD_SIZE: tuple[str, ...] = tuple(
    sorted(CLASSES, key=lambda c: (-TD_CLASS_COUNTS[c], CLASSES.index(c)))
)

#: CSC energy bands (keV), keyed by the CSC one-letter band code: soft, medium, hard, broad.
CSC_BANDS_KEV: dict[str, tuple[float, float]] = {
    "s": (0.5, 1.2),
    "m": (1.2, 2.0),
    "h": (2.0, 7.0),
    "b": (0.5, 7.0),
}

#: Every edge of the CSC bands (keV), increasing: 0.5, 1.2, 2.0, 7.0.
CSC_BAND_EDGES_KEV: tuple[float, ...] = tuple(
    sorted({edge for band in CSC_BANDS_KEV.values() for edge in band})
)

#: Title of the reference study: 8-d latents of real CSC spectra, clustered and scored by
#: balanced accuracy against the eight labelled classes.
REFERENCE_STUDY = "Extracting latent representations from X-ray spectra"

#: The reference study's clustering balanced accuracy over the eight classes (~0.40).
REFERENCE_BACC_8CLASS = 0.40

#: The reference study's clustering balanced accuracy for AGN vs compact objects (~0.69).
REFERENCE_BACC_AGN_VS_COMPACT = 0.69

#: Prefix of the latent columns of a latent catalogue: ``latent_0 ... latent_{d-1}``.
LATENT_PREFIX = "latent_"


def latent_name(i: int) -> str:
    """The catalogue column of latent ``i``: ``latent_<i>``."""
    return f"{LATENT_PREFIX}{i}"


#: Suffix of a latent's standard error column: ``latent_<i>_err``.
LATENT_ERR_SUFFIX = "_err"
#: The out-of-distribution score of a catalogue row and its flag (score above the model's
#: threshold, which flags 1% of in-distribution spectra).
OOD_SCORE = "ood_score"
OOD_FLAG = "ood_flag"


def latent_err_name(i: int) -> str:
    """The catalogue column of latent ``i``'s standard error: ``latent_<i>_err``."""
    return f"{latent_name(i)}{LATENT_ERR_SUFFIX}"


def latent_err_columns(df: Any) -> list[str]:
    """The ``latent_<i>_err`` columns of a table in index order (one per latent that has one)."""
    names = [f"{c}{LATENT_ERR_SUFFIX}" for c in latent_columns(df)]
    return [c for c in names if c in df.columns]


def latent_columns(df: Any) -> list[str]:
    """The ``latent_<i>`` columns of a table (anything with ``.columns``) in index order;
    not ``latent_<i>_err`` nor any other ``latent_``-prefixed column."""
    n = len(LATENT_PREFIX)
    cols = [c for c in df.columns if c.startswith(LATENT_PREFIX) and c[n:].isdigit()]
    return sorted(cols, key=lambda c: int(c[n:]))


__all__ = [
    "CLASSES",
    "CLASSES_BY_TD_SIZE",
    "COMPACT",
    "CSC_BANDS_KEV",
    "CSC_BAND_EDGES_KEV",
    "LATENT_ERR_SUFFIX",
    "LATENT_PREFIX",
    "OOD_FLAG",
    "OOD_SCORE",
    "REFERENCE_BACC_8CLASS",
    "REFERENCE_BACC_AGN_VS_COMPACT",
    "REFERENCE_STUDY",
    "TD_CLASS_COUNTS",
    "latent_columns",
    "latent_err_columns",
    "latent_err_name",
    "latent_name",
]
