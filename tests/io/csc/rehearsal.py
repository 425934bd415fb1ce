"""The catalogue-scale rehearsal's stand-in: a mock CSC archive served by the loopback CSC
stand-in, with catalogue rows made from the archive's own catalogue (shared by
tests/io/csc/test_rehearsal.py and benchmarks/csc_rehearsal.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .fake_csc import FakeCSC
from .mock_archive import MockArchive, catalog_row

#: observation_source values taken from the mock archive's catalogue.
_OBS = ("theta", "livetime", "src_cnts_aper_b", "flux_significance_b", "flux_aper_b", "hard_hm",
        "hard_hs", "hard_ms", "var_prob_b", "var_index_b")  # fmt: skip


def serve(archive_root, catalog_path, row_limit: int = 100_000) -> FakeCSC:  # noqa: ANN001
    """Start the stand-in over ``archive_root`` answering queries from ``catalog_path``."""
    cat = pd.read_parquet(catalog_path)
    rng = np.random.default_rng(0)
    rows = []
    for rec in cat.to_dict("records"):
        key = (int(rec["obsid"]), int(rec["obi"]), int(rec["region_id"]))
        obs = {k: (int(rec[k]) if k == "var_index_b" else float(rec[k])) for k in _OBS}
        row = catalog_row(key, str(rec["name"]), rng, **obs)
        row["master_source"].update(
            ra=float(rec["ra"]), dec=float(rec["dec"]), powlaw_gamma=float(rec["powlaw_gamma"])
        )
        rows.append(row)
    return FakeCSC(MockArchive(archive_root), rows, row_limit=row_limit).start()
