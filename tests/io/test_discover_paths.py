"""real_paths (one realpath a directory) is real_path of every path, and unique_ids
column by column is the row-by-row original (both are on ingest's serial path)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from xlatent.io.discover import real_path, real_paths
from xlatent.io.registry import int_or, unique_ids


def test_real_paths_is_real_path_of_each(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.pha").write_text("x")
    (d / "sub" / "b.pha").write_text("x")
    (tmp_path / "linkdir").symlink_to(d)  # a symlinked directory
    (d / "alias.pha").symlink_to(d / "sub" / "b.pha")  # a symlinked file
    (d / "loop").symlink_to(d / "loop")  # a symlink loop
    (d / "dangling.pha").symlink_to(tmp_path / "nowhere.pha")
    monkeypatch.chdir(d)
    paths = [
        d / "a.pha", tmp_path / "linkdir" / "a.pha", tmp_path / "linkdir" / "sub" / ".." / "a.pha",
        str(tmp_path / "linkdir" / "alias.pha"), "a.pha", "sub/b.pha", "./sub/../a.pha",
        "missing.pha", str(d / "loop"), str(d / "loop" / "x.pha"), "dangling.pha",
        str(tmp_path / "linkdir") + "/", "sub/..", ".", "", "//" + str(d / "a.pha"),
        str(tmp_path / "linkdir" / "nodir" / "f.pha"),
    ]  # fmt: skip
    assert real_paths(paths) == [real_path(p) for p in paths]
    # the point of it: a directory is resolved once, not once a file
    calls = []
    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **k: calls.append(p) or real(p, **k))
    many = [d / f"f{i}.pha" for i in range(50)]
    assert real_paths(many) == [real(p) for p in many] and len(calls) == 1


def _unique_ids_by_row(meta: pd.DataFrame) -> list[str]:
    """The row-by-row original of unique_ids (before ingest17)."""
    ids, seen = [], {}
    for _, row in meta.iterrows():
        spec_id = row.get("spec_id")
        obsid, obi, region = (int_or(row.get(k), -1) for k in ("obsid", "obi", "region_id"))
        if isinstance(spec_id, str) and spec_id and not spec_id.startswith("spec"):
            base = spec_id
        elif obsid >= 0 and region >= 0:
            base = f"{obsid}_{obi:03d}_{region:04d}"
        else:
            source = row.get("source_file")
            base = Path(source).name.split(".")[0] if isinstance(source, str) else ""
            base = base or (spec_id if isinstance(spec_id, str) and spec_id else "spec")
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.append(base if n == 0 else f"{base}_{n}")
    return ids


def test_unique_ids_column_wise_is_row_wise() -> None:
    meta = pd.DataFrame({
        "spec_id": ["", "spec3", "x1", None, np.nan, "x1", "spec", "", "", ""],
        "obsid": [12, 12, -1, np.nan, 5, 7, "33", 12, 3.0, None],
        "obi": [0, 0, 1, 2, np.nan, 1, "1", 0, 1, 1],
        "region_id": [4, 4, 5, 6, 7, -1, "8", 4, np.nan, 2],
        "source_file": ["/a/s.pha", "/b/s.pha.gz", None, "/c/t.pi", 1.5, "", "/d/u.fits",
                        "/a/s.pha", "", "/e/.hidden"],
        "other": range(10),
    })  # fmt: skip
    assert unique_ids(meta) == _unique_ids_by_row(meta)
    for drop in (["spec_id"], ["obsid", "region_id"], ["source_file"], list(meta.columns)):
        sub = meta.drop(columns=drop)
        assert unique_ids(sub) == _unique_ids_by_row(sub)
    numeric = pd.DataFrame({"obsid": [1, 2, 1], "obi": [0, 0, 0], "region_id": [3, 3, 3]})
    assert unique_ids(numeric) == _unique_ids_by_row(numeric) == ["1_000_0003", "2_000_0003",
                                                                  "1_000_0003_1"]  # fmt: skip
