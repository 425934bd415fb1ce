"""CSC TAP query: the ADQL builder, the query against the fake service, catalogue files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlatent.core.errors import InputError
from xlatent.io.csc.query import (
    DEFAULT_TAP_URL,
    CSCOverflowError,
    CSCServiceError,
    QueryCriteria,
    build_adql,
    query_csc,
    read_catalog,
    tap_url,
    write_catalog,
)

from .fake_csc import FakeCSC
from .mock_archive import synthetic_catalog

REQUIRED = [
    "name", "ra", "dec", "obsid", "obi", "region_id", "src_cnts_aper_b", "flux_significance_b",
    "flux_aper_b", "theta", "hard_hm", "hard_hs", "hard_ms", "var_prob_b", "var_index_b",
    "powlaw_nh",
]  # fmt: skip


def test_adql_uses_comma_joins_and_unique_matches() -> None:
    """As CIAO's csccli.py and the Multimodal Universe script write it: comma joins through
    stack_source, every condition in WHERE, a.match_type = 'u' (and returned)."""
    q = build_adql(QueryCriteria(min_counts=40, min_significance=5, max_theta_arcmin=10))
    assert "JOIN" not in q.upper().replace("JOINS", "")
    assert (
        "FROM csc21.master_source m, csc21.master_stack_assoc a, csc21.stack_source s,\n"
        "  csc21.stack_observation_assoc b, csc21.observation_source o\nWHERE m.name = a.name\n"
    ) in q
    assert "s.detect_stack_id = a.detect_stack_id AND s.region_id = a.region_id" in q
    assert "s.detect_stack_id = b.detect_stack_id AND s.region_id = b.region_id" in q
    assert "o.obsid = b.obsid AND o.obi = b.obi AND o.region_id = b.region_id" in q
    assert "AND a.match_type = 'u'" in q
    assert "o.src_cnts_aper_b >= 40.0" in q
    assert "o.flux_significance_b >= 5.0" in q
    assert "o.theta <= 10.0" in q
    assert "o.instrument = 'ACIS'" in q
    assert "TOP" not in q
    select = q.split("FROM")[0]
    for col in [*REQUIRED, "match_type"]:
        assert f".{col}" in select, col
    assert "match_type = 'u'" not in build_adql(QueryCriteria(unique_only=False))


def test_adql_schema_and_top() -> None:
    q = build_adql(QueryCriteria(top=25), schema="csc2")
    assert q.startswith("SELECT TOP 25\n")
    assert "csc2.observation_source o" in q and "csc21." not in q
    # CSC 2.0 names (CIAO's csc2_columns): no src_cnts_aper_b, hard_hs, powlaw_*
    assert "o.cnts_aper_b >= 40.0" in q and "src_cnts_aper_b" not in q
    assert "hard_hs" not in q and "powlaw" not in q
    assert "FROM master_source m, master_stack_assoc a" in build_adql(schema="")
    assert tap_url(schema="csc2") == "http://127.0.0.1:9/unset"  # the environment wins
    with pytest.raises(ValueError, match="schema must be one of"):
        build_adql(schema="csc3")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_counts": math.nan},
        {"max_theta_arcmin": math.inf},
        {"top": 0},
        {"instrument": "ACIS' OR 1=1 --"},
    ],
)
def test_adql_rejects_bad_criteria(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_adql(QueryCriteria(**kwargs))
    with pytest.raises(ValueError):
        build_adql(schema="csc21; DROP")


def test_tap_url_option_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLATENT_CSC_TAP_URL", "http://127.0.0.1:1/envtap/")
    assert tap_url("http://127.0.0.1:2/opt") == "http://127.0.0.1:2/opt"
    assert tap_url() == "http://127.0.0.1:1/envtap"
    monkeypatch.delenv("XLATENT_CSC_TAP_URL")
    assert tap_url() == DEFAULT_TAP_URL == "https://cda.cfa.harvard.edu/csc21tap"
    assert tap_url(schema="csc2") == "https://cda.cfa.harvard.edu/csc2tap"


@pytest.mark.parametrize("redirect", [True, False])
def test_query_against_fake_tap(fake_csc, redirect: bool) -> None:
    fake_csc.sync_redirect = redirect  # 303 to the job's result (pyvo follows it), or direct
    frame = query_csc(QueryCriteria(), url=fake_csc.tap_url, retries=0)
    assert set(REQUIRED) <= set(frame.columns) and "match_type" in frame
    # the three rows that fail a cut and the ambiguous match are left out; six come back
    assert len(frame) == 6 and (frame["match_type"] == "u").all()
    assert 999 not in set(frame["obsid"])
    assert frame["obsid"].dtype == np.int64 and frame["region_id"].dtype == np.int64
    assert frame["name"].str.startswith("2CXO J").all()
    assert frame["powlaw_nh"].isna().sum() == 1  # the catalogue NULL became NaN
    assert frame.attrs["units"]["theta"] == "arcmin" and frame.attrs["units"]["ra"] == "deg"
    sent = fake_csc.tap_log[-1]
    assert sent["REQUEST"] == "doQuery" and sent["LANG"] == "ADQL"
    assert "csc21.observation_source" in sent["QUERY"]
    top = query_csc(QueryCriteria(top=2, min_counts=0), url=fake_csc.tap_url, retries=0)
    assert len(top) == 2  # truncated at what was asked: no error
    both = query_csc(QueryCriteria(unique_only=False), url=fake_csc.tap_url, retries=0)
    assert len(both) == 8 and sorted(both["match_type"])[:2] == ["a", "a"]


def test_query_csc2_goes_to_its_own_service(fake_csc) -> None:
    frame = query_csc(url=fake_csc.tap2_url, schema="csc2", retries=0)
    assert len(frame) == 6 and "cnts_aper_b" in frame and "src_cnts_aper_b" not in frame
    with pytest.raises(CSCServiceError, match="Table 'csc21.master_source' does not exist"):
        query_csc(url=fake_csc.tap2_url, schema="csc21", retries=0)  # 2.1 names on 2.0


@pytest.mark.parametrize("status", [400, 200])
def test_error_answer_is_one_line_and_not_retried(fake_csc, status: int) -> None:
    """A VOTable QUERY_STATUS=ERROR answer (HTTP 400 or 200) is reported, never retried."""
    fake_csc.error_status = status
    cols = (("m.name", "name"), ("o.obsid", "obsid"), ("o.no_such_column", "x"))
    adql = build_adql(columns=cols)
    with pytest.raises(CSCServiceError) as info:
        query_csc(url=fake_csc.tap_url, adql=adql, retries=3, backoff_s=0.01)
    msg = str(info.value)
    assert "\n" not in msg and fake_csc.tap_url in msg
    assert "query rejected by the service: Column 'no_such_column' does not exist" in msg
    assert len(fake_csc.tap_log) == 1


def test_overflow_is_an_error_with_the_row_count(fake_csc) -> None:
    fake_csc.row_limit = 4
    with pytest.raises(CSCOverflowError) as info:
        query_csc(url=fake_csc.tap_url, retries=0)
    assert "row limit (4 rows returned, more match)" in str(info.value)
    assert "--min-counts" in str(info.value)
    with pytest.warns(UserWarning, match="row limit"):
        frame = query_csc(url=fake_csc.tap_url, retries=0, allow_overflow=True)
    assert len(frame) == 4 and frame.attrs["truncated"]


def test_stand_in_scales_to_a_catalogue_of_2000_detections(mock_archive) -> None:
    """The rehearsal hook: any catalogue (synthetic_catalog) over any archive directory."""
    keys = [(10000 + i // 50, 0, 1 + i % 50) for i in range(2000)]
    server = FakeCSC(mock_archive, synthetic_catalog(keys, seed=1)).start()
    try:
        frame = query_csc(url=server.tap_url, retries=0)
        assert len(frame) == 2000 and frame["obsid"].nunique() == 40
    finally:
        server.stop()


@pytest.mark.parametrize("fault", ["503", "500", "timeout", "drop"])
def test_query_retries_transient_faults(fake_csc, fault: str) -> None:
    fake_csc.fail_tap = [fault]
    frame = query_csc(url=fake_csc.tap_url, retries=2, backoff_s=0.01, timeout_s=0.4)
    assert len(frame) == 6
    assert len(fake_csc.tap_log) == 2


def test_query_gives_up_with_a_one_line_error(fake_csc) -> None:
    fake_csc.fail_tap = ["500"] * 5
    with pytest.raises(CSCServiceError) as info:
        query_csc(url=fake_csc.tap_url, retries=2, backoff_s=0.01)
    assert fake_csc.tap_url in str(info.value) and "\n" not in str(info.value)
    assert len(fake_csc.tap_log) == 3


def test_query_unreachable_service() -> None:
    with pytest.raises(CSCServiceError, match="127.0.0.1:9"):
        query_csc(url="http://127.0.0.1:9/tap", retries=1, backoff_s=0.01, timeout_s=0.5)


@pytest.mark.parametrize("ext", [".fits", ".parquet", ".csv"])
def test_catalog_round_trip(tmp_path: Path, ext: str) -> None:
    frame = pd.DataFrame(
        {
            "name": ["2CXO J000009.3+135618", "2CXO J000230.7+004959"],
            "obsid": [308, 1575],
            "obi": [0, 1],
            "region_id": [44, 85],
            "powlaw_nh": [0.3, np.nan],
        }
    )
    path = write_catalog(frame, tmp_path / f"cat{ext}")
    back = read_catalog(path)
    assert back["name"].tolist() == frame["name"].tolist()
    assert back["obsid"].tolist() == [308, 1575] and back["region_id"].dtype == np.int64
    assert back["powlaw_nh"].iloc[0] == pytest.approx(0.3) and np.isnan(back["powlaw_nh"].iloc[1])
    assert [p.name for p in tmp_path.iterdir()] == [f"cat{ext}"]  # no temp file left


def test_catalog_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown catalogue format"):
        write_catalog(pd.DataFrame({"obsid": [1]}), tmp_path / "cat.txt")
    with pytest.raises(InputError, match="no such file"):
        read_catalog(tmp_path / "missing.fits")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="lacks column"):
        read_catalog(bad)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    with pytest.raises(InputError, match="not a readable catalogue"):
        read_catalog(junk)
