"""Query the Chandra Source Catalog (CSC 2.x) TAP service for per-detection properties.

One row per (master source, ACIS observation detection) whose association is unique
(``a.match_type = 'u'``): master-source identity and position joined to the per-observation
detection (``observation_source``) through the stack tables, with comma joins and every
condition in ``WHERE``, as CIAO's ``csccli.py`` (``ciao_contrib/cda``) and the Multimodal
Universe script (``scripts/chandra/download_script.py``) write it::

    master_source m, master_stack_assoc a, stack_source s, stack_observation_assoc b,
    observation_source o
    WHERE m.name = a.name AND s.(detect_stack_id, region_id) = a.(...) = b.(...)
      AND o.(obsid, obi, region_id) = b.(...)

An answer the service truncated at its row limit (``QUERY_STATUS`` ``OVERFLOW``) raises
:class:`CSCOverflowError`; an error answer (a VOTable with ``QUERY_STATUS`` ``ERROR``, HTTP
200 or 400) is reported in one line and never retried. Units come from the answer's own
VOTable ``FIELD`` metadata (``frame.attrs["units"]``, kept as FITS ``TUNIT``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from xlatent.core.atomic import atomic_path
from xlatent.core.errors import InputError, XlatentError
from xlatent.io.csc.retry import (  # re-exported: the retry rules of every CSC request
    TRANSIENT_STATUS,
    TransientError,
    _reason,
    is_transient,
    with_retries,
)

#: The TAP service of each catalogue release, by ADQL schema (queries go to ``<url>/sync``).
TAP_URLS = {
    "csc21": "https://cda.cfa.harvard.edu/csc21tap",
    "csc2": "https://cda.cfa.harvard.edu/csc2tap",
}
DEFAULT_TAP_URL = TAP_URLS["csc21"]
TAP_URL_ENV = "XLATENT_CSC_TAP_URL"
#: ADQL schema of the catalogue release (``csc21`` for CSC 2.1, ``csc2`` for CSC 2.0).
DEFAULT_SCHEMA = "csc21"

#: (select expression, output column). Per-detection quantities come from the observation
#: detection ``o``; identity, position and the spectral fit from the master source ``m``.
DEFAULT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("m.name", "name"),
    ("m.ra", "ra"),
    ("m.dec", "dec"),
    ("a.match_type", "match_type"),
    ("o.obsid", "obsid"),
    ("o.obi", "obi"),
    ("o.region_id", "region_id"),
    ("o.instrument", "instrument"),
    ("o.theta", "theta"),
    ("o.livetime", "livetime"),
    ("o.src_cnts_aper_b", "src_cnts_aper_b"),
    ("o.flux_significance_b", "flux_significance_b"),
    ("o.flux_aper_b", "flux_aper_b"),
    ("o.hard_hm", "hard_hm"),
    ("o.hard_hs", "hard_hs"),
    ("o.hard_ms", "hard_ms"),
    ("o.var_prob_b", "var_prob_b"),
    ("o.var_index_b", "var_index_b"),
    ("m.powlaw_gamma", "powlaw_gamma"),
    ("m.powlaw_nh", "powlaw_nh"),
)
#: CSC 2.0 (``csc2``): only the columns CIAO's csccli.py lists for release 2.0. It lists no
#: ``src_cnts_aper_b`` (net counts) nor ``hard_hs``/``powlaw_*``: the counts cut is on
#: ``cnts_aper_b`` (aperture counts) there. See docs/csc_access.md.
CSC2_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    c
    for c in DEFAULT_COLUMNS
    if c[1] not in ("src_cnts_aper_b", "hard_hs", "powlaw_gamma", "powlaw_nh")
) + (("o.cnts_aper_b", "cnts_aper_b"),)
COLUMNS = {"csc21": DEFAULT_COLUMNS, "csc2": CSC2_COLUMNS}
#: Column of ``o`` that ``min_counts`` applies to, by schema.
COUNTS_COLUMN = {"csc21": "src_cnts_aper_b", "csc2": "cnts_aper_b"}


class CSCServiceError(XlatentError):
    """A CSC web service could not be used (after retries); the message names the URL."""


class CSCOverflowError(CSCServiceError):
    """The service truncated the answer at its row limit (``QUERY_STATUS`` ``OVERFLOW``)."""


@dataclass(frozen=True)
class QueryCriteria:
    """Selection of per-observation ACIS detections.

    ``min_counts``: aperture-corrected net source counts (0.5-7 keV, ``src_cnts_aper_b``);
    ``min_significance``: broad-band flux significance (``flux_significance_b``);
    ``max_theta_arcmin``: off-axis angle (``theta``, arcmin); ``top``: at most this many rows;
    ``unique_only``: only unique source-detection matches (``match_type = 'u'``; ambiguous
    ones, ``'a'``, give one row per candidate master source).
    """

    min_counts: float = 40.0
    min_significance: float = 5.0
    max_theta_arcmin: float = 10.0
    instrument: str = "ACIS"
    top: int | None = None
    unique_only: bool = True


def build_adql(
    criteria: QueryCriteria | None = None,
    schema: str = DEFAULT_SCHEMA,
    columns: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The ADQL query for ``criteria`` (pure; no network).

    ``schema`` prefixes every table (``csc21.master_source``) and picks the release's column
    names (``csc21`` or ``csc2``); pass ``""`` for no prefix (CSC 2.1 names).
    """
    c = criteria or QueryCriteria()
    for value, label in (
        (c.min_counts, "min_counts"),
        (c.min_significance, "min_significance"),
        (c.max_theta_arcmin, "max_theta_arcmin"),
    ):
        if not np.isfinite(value):
            raise ValueError(f"{label} must be a finite number, not {value!r}")
    if c.top is not None and c.top <= 0:
        raise ValueError(f"top must be positive, not {c.top}")
    if not c.instrument.isalnum():
        raise ValueError(f"instrument must be alphanumeric, not {c.instrument!r}")
    release = schema or DEFAULT_SCHEMA
    if release not in COLUMNS:
        raise ValueError(f"schema must be one of {', '.join(COLUMNS)} (or ''), not {schema!r}")
    p = f"{schema}." if schema else ""
    cols = COLUMNS[release] if columns is None else columns
    select = ",\n  ".join(
        expr if expr.endswith(f".{out}") else f"{expr} AS {out}" for expr, out in cols
    )
    top = f" TOP {int(c.top)}" if c.top else ""
    unique = "\n  AND a.match_type = 'u'" if c.unique_only else ""
    return (
        f"SELECT{top}\n  {select}\n"
        f"FROM {p}master_source m, {p}master_stack_assoc a, {p}stack_source s,\n"
        f"  {p}stack_observation_assoc b, {p}observation_source o\n"
        f"WHERE m.name = a.name\n"
        f"  AND s.detect_stack_id = a.detect_stack_id AND s.region_id = a.region_id\n"
        f"  AND s.detect_stack_id = b.detect_stack_id AND s.region_id = b.region_id\n"
        f"  AND o.obsid = b.obsid AND o.obi = b.obi AND o.region_id = b.region_id{unique}\n"
        f"  AND o.instrument = '{c.instrument}'\n"
        f"  AND o.{COUNTS_COLUMN[release]} >= {float(c.min_counts)!r}\n"
        f"  AND o.flux_significance_b >= {float(c.min_significance)!r}\n"
        f"  AND o.theta <= {float(c.max_theta_arcmin)!r}\n"
        f"ORDER BY m.name, o.obsid, o.obi, o.region_id"
    )


def tap_url(url: str | None = None, schema: str = DEFAULT_SCHEMA) -> str:
    """``url``, else ``$XLATENT_CSC_TAP_URL``, else the public service of ``schema``'s release
    (``csc21tap`` for CSC 2.1, ``csc2tap`` for CSC 2.0)."""
    default = TAP_URLS.get(schema, DEFAULT_TAP_URL)
    return (url or os.environ.get(TAP_URL_ENV) or default).rstrip("/")


class _TimeoutSession(requests.Session):
    """A session that applies a default timeout (pyvo sets none)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self._timeout_s = timeout_s
        self.headers["User-Agent"] = "xlatent-csc/1 (+pyvo)"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self._timeout_s)
        return super().request(method, url, *args, **kwargs)


# ------------------------------------------------------------------------------- query
def query_csc(
    criteria: QueryCriteria | None = None,
    url: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    timeout_s: float = 300.0,
    retries: int = 4,
    backoff_s: float = 2.0,
    adql: str | None = None,
    allow_overflow: bool = False,
) -> pd.DataFrame:
    """Run the detection query synchronously against the TAP service; one row per detection.

    Transient failures (timeouts, 5xx, dropped connections) are retried with exponential
    backoff; an error answer of the service (bad column, syntax) is not; anything else raises
    :class:`CSCServiceError` with a one-line reason. An answer truncated at the service's row
    limit raises :class:`CSCOverflowError` (a warning instead with ``allow_overflow``); one
    truncated at ``criteria.top`` is what was asked. Units: ``frame.attrs["units"]``.
    """
    import pyvo

    service_url = tap_url(url, schema)
    query = adql or build_adql(criteria, schema=schema)
    service = pyvo.dal.TAPService(service_url, session=_TimeoutSession(timeout_s))
    maxrec = criteria.top if criteria is not None and criteria.top else None

    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pyvo.dal.DALOverflowWarning)  # reported below
            return service.run_sync(query, maxrec=maxrec)

    try:
        result = with_retries(run, retries=retries, backoff_s=backoff_s)
        table = result.to_table()
    except Exception as exc:
        raise CSCServiceError(f"{service_url}: {_reason(exc)}") from None
    status = str(getattr(result, "query_status", None) or "OK").upper()
    if status == "OVERFLOW" and not (maxrec and len(table) >= maxrec):
        msg = (
            f"{service_url}: the service truncated the answer at its row limit "
            f"({len(table)} rows returned, more match); narrow the query (higher "
            "--min-counts or --min-significance, smaller --max-theta) and run it in parts"
        )
        if not allow_overflow:
            raise CSCOverflowError(msg)
        warnings.warn(msg, stacklevel=2)
    frame = table_to_frame(table)
    frame.attrs["units"] = {
        name.lower(): str(table[name].unit)
        for name in table.colnames
        if getattr(table[name], "unit", None) is not None
    }
    frame.attrs["truncated"] = status == "OVERFLOW"
    return frame


def table_to_frame(table: Any) -> pd.DataFrame:
    """An astropy Table (masked values -> NaN / "" / -1) as a DataFrame with clean dtypes."""
    cols = {}
    for name in table.colnames:
        col = table[name]
        mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), dtype=bool)
        values = np.asarray(col.filled() if hasattr(col, "filled") else col)
        if values.dtype.kind in "SUO":
            out = np.array([_as_text(v) for v in values], dtype=object)
            out[mask] = ""
        elif values.dtype.kind in "iu":
            out = values.astype(np.int64)
            if mask.any():
                out = out.copy()
                out[mask] = -1
        elif values.dtype.kind == "b":
            out = values.astype(bool)
        else:
            out = values.astype(np.float64)
            out[mask] = np.nan
        cols[name.lower()] = out
    frame = pd.DataFrame(cols)
    for key in ("obsid", "obi", "region_id"):
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce").fillna(-1).astype(np.int64)
    # Declared units (VOTable FIELD, FITS TUNIT) travel with the frame, e.g. for powlaw_nh.
    units = {n.lower(): str(table[n].unit) for n in table.colnames if table[n].unit is not None}
    if units:
        frame.attrs["units"] = units
    return frame


def _as_text(v: Any) -> str:
    return v.decode("utf-8", "replace").strip() if isinstance(v, bytes) else str(v).strip()


# ---------------------------------------------------------------------------- catalogue I/O
_FORMATS = {".fits": "fits", ".fit": "fits", ".parquet": "parquet", ".csv": "csv"}


def write_catalog(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` atomically as FITS, Parquet or CSV (chosen by the extension)."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, "unknown catalogue format (use .fits, .parquet or .csv)")
    with atomic_path(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            from astropy.table import Table

            table = Table.from_pandas(frame)
            units = frame.attrs.get("units", {})
            for name in table.colnames:
                if table[name].dtype.kind == "O":
                    table[name] = np.asarray(table[name], dtype=str)
                if units.get(name):
                    table[name].unit = units[name]
            table.meta["ORIGIN"] = "xlatent csc query"
            table.write(tmp, format="fits", overwrite=True)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Any catalogue table by extension: Parquet, CSV/TSV, VOTable or FITS; lower-case columns."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", comment=None)
        else:
            from astropy.table import Table

            fmt = "votable" if suffix in (".vot", ".xml", ".votable") else None
            frame = table_to_frame(Table.read(path, format=fmt) if fmt else Table.read(path))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"not a readable catalogue ({_reason(exc)})") from None
    frame.columns = [str(c).lower() for c in frame.columns]
    return frame


def read_catalog(path: str | Path) -> pd.DataFrame:
    """Read a catalogue written by :func:`write_catalog` (or a VOTable / TSV from the CSC)."""
    path = Path(path)
    frame = read_table(path)
    missing = [c for c in ("obsid", "obi", "region_id") if c not in frame]
    if missing:
        raise InputError(path, f"catalogue lacks column(s) {', '.join(missing)}")
    for key in ("obsid", "obi", "region_id"):
        frame[key] = pd.to_numeric(frame[key], errors="coerce").fillna(-1).astype(np.int64)
    if "name" in frame:
        frame["name"] = frame["name"].fillna("").astype(str).str.strip()
    return frame


__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_SCHEMA",
    "DEFAULT_TAP_URL",
    "TAP_URL_ENV",
    "TRANSIENT_STATUS",
    "COLUMNS",
    "CSC2_COLUMNS",
    "TAP_URLS",
    "CSCOverflowError",
    "CSCServiceError",
    "QueryCriteria",
    "TransientError",
    "build_adql",
    "is_transient",
    "query_csc",
    "read_catalog",
    "read_table",
    "table_to_frame",
    "tap_url",
    "with_retries",
    "write_catalog",
]
