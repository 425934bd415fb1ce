"""The stand-in's data: the CSC 2.x schema subset it knows, a mock archive, a catalogue.

Schema (``SCHEMAS``): the tables and columns the stand-in TAP service accepts, with units.
Sources (see docs/csc_access.md): table names and the join columns from CIAO's
``ciao_contrib/cda/csccli.py`` (cxcsds/ciao-contrib) and the Multimodal Universe
``scripts/chandra/download_script.py``; column names from csccli.py's ``csc2_columns`` /
``csc21_columns`` / ``required_cols`` lists and the Multimodal Universe query, except
``m.powlaw_gamma``, ``m.powlaw_nh`` (CSC 2.1 column documentation, cxc.cfa.harvard.edu/csc/
columns, not checked against the live service here). Units follow the CSC column
documentation as far as known; ``powlaw_nh``'s unit (``1e20 cm**-2``, as the CSC documents
it) is not checked against the live service, whose own FIELD metadata governs in real use.

Mock archive: any directory of CSC per-detection products (``acisf..._pha3.fits[.gz]``, any
depth); :class:`MockArchive` indexes it by ``(obsid, obi, region_id)`` with its own parser
(not xlatent's). :func:`build_mock_archive` writes the six test detections (three real CSC
detections from ``shared/data/real_spectra`` and three clones: one plain, one with mixed
processing versions ``N022``/``N021``); with ``interleaved=True`` two more, named with an
interleaved-mode cycle (``_e2``; ``_e1`` with mixed versions).

Catalogue: a list of rows, each ``{table name: {column: value}}`` (one row of the join of the
five tables); :func:`synthetic_catalog` makes plausible rows for any detection keys.
"""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

Key = tuple[int, int, int]
PRODUCTS = ("pha3", "arf3", "rmf3")
PRODUCT_OF_FILETYPE = {"spectrum": "pha3", "arf": "arf3", "rmf": "rmf3"}

_COMMON_O = {
    "obsid": "", "obi": "", "region_id": "", "instrument": "", "theta": "arcmin",
    "livetime": "s", "cnts_aper_b": "count", "flux_significance_b": "",
    "flux_aper_b": "erg s**-1 cm**-2", "hard_hm": "", "hard_ms": "", "var_prob_b": "",
    "var_index_b": "",
}  # fmt: skip
_JOIN = {
    "master_stack_assoc": {"name": "", "detect_stack_id": "", "region_id": "", "match_type": ""},
    "stack_source": {"detect_stack_id": "", "region_id": ""},
    "stack_observation_assoc": {"detect_stack_id": "", "region_id": "", "obsid": "", "obi": ""},
}
#: schema -> table -> column -> unit ("" for none).
SCHEMAS: dict[str, dict[str, dict[str, str]]] = {
    "csc21": {
        "master_source": {
            "name": "", "ra": "deg", "dec": "deg", "powlaw_gamma": "",
            "powlaw_nh": "1e20 cm**-2",
        },
        "observation_source": {
            **_COMMON_O, "src_cnts_aper_b": "count", "hard_hs": "", "flux_bb_aper_b": "",
        },
        **_JOIN,
    },
    "csc2": {"master_source": {"name": "", "ra": "deg", "dec": "deg"},
             "observation_source": dict(_COMMON_O), **_JOIN},
}  # fmt: skip
#: The join a query must state (comma joins, conditions in WHERE), as (alias.col, alias.col).
REQUIRED_JOIN = {
    frozenset(p)
    for p in [
        ("m.name", "a.name"),
        ("s.detect_stack_id", "a.detect_stack_id"),
        ("s.region_id", "a.region_id"),
        ("s.detect_stack_id", "b.detect_stack_id"),
        ("s.region_id", "b.region_id"),
        ("o.obsid", "b.obsid"),
        ("o.obi", "b.obi"),
        ("o.region_id", "b.region_id"),
    ]
}
ALIASES = {
    "master_source": "m",
    "master_stack_assoc": "a",
    "stack_source": "s",
    "stack_observation_assoc": "b",
    "observation_source": "o",
}

_NAME = re.compile(
    r"^(acis|hrc)f(\d{5})_(\d{3})N(\d{3})(?:_(e[12]))?_r(\d{4})_(pha3|arf3|rmf3)\.fits(\.gz)?$"
)


@dataclass
class ArchiveDetection:
    """One detection of the mock archive: product -> (file name, path) of its served files
    (the last one of several versions/cycles), and ``all_files`` every file it has."""

    key: Key
    files: dict[str, tuple[str, Path]] = field(default_factory=dict)
    all_files: list[tuple[str, Path]] = field(default_factory=list)


class MockArchive:
    """A directory of CSC per-detection products, indexed by detection key."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.by_key: dict[Key, ArchiveDetection] = {}
        for path in sorted(self.directory.rglob("*f?????_???N*_r????_*3.fits*")):
            m = _NAME.match(path.name)
            if not m or not path.is_file():
                continue
            key = (int(m.group(2)), int(m.group(3)), int(m.group(6)))
            det = self.by_key.setdefault(key, ArchiveDetection(key))
            det.files[m.group(7)] = (path.name, path)
            det.all_files.append((path.name, path))

    def files_of(self, key: Key, product: str) -> list[tuple[str, Path]]:
        det = self.by_key.get(key)
        if det is None:
            return []
        return [(n, p) for n, p in det.all_files if _NAME.match(n).group(7) == product]

    @property
    def keys(self) -> list[Key]:
        return sorted(self.by_key)


# ------------------------------------------------------------------------ test archive
#: Real CSC detections in shared/data/real_spectra: key -> file stem.
REAL = {
    (308, 0, 44): "acisf00308_000N001_r0044",
    (1575, 1, 85): "acisf01575_001N001_r0085",
    (1878, 0, 100): "acisf01878_000N001_r0100",
}
#: Clones: new key -> (real key, {product: new file stem}).
CLONES = {
    (308, 0, 45): ((308, 0, 44), dict.fromkeys(PRODUCTS, "acisf00308_000N001_r0045")),
    (1878, 0, 101): (  # one detection, two processing versions (as the archive has them)
        (1878, 0, 100),
        {"pha3": "acisf01878_000N022_r0101", "arf3": "acisf01878_000N021_r0101",
         "rmf3": "acisf01878_000N021_r0101"},
    ),
    (1575, 1, 86): ((1575, 1, 85), dict.fromkeys(PRODUCTS, "acisf01575_001N001_r0086")),
}  # fmt: skip
#: Interleaved-mode (alternating exposure) clones: the cycle is in the file names.
INTERLEAVED = {
    (1575, 1, 87): ((1575, 1, 85), dict.fromkeys(PRODUCTS, "acisf01575_001N001_e2_r0087")),
    (1878, 0, 102): (
        (1878, 0, 100),
        {"pha3": "acisf01878_000N022_e1_r0102", "arf3": "acisf01878_000N021_e1_r0102",
         "rmf3": "acisf01878_000N021_e1_r0102"},
    ),
}  # fmt: skip


def build_mock_archive(src_dir: Path, out_dir: Path, interleaved: bool = False) -> MockArchive:
    """Six servable detections in ``out_dir`` (one folder per obsid), from the real files;
    eight with ``interleaved`` (two more named with a cycle, ``_e2`` and ``_e1``)."""
    for key, stem in REAL.items():
        folder = out_dir / f"{key[0]:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for product in PRODUCTS:
            src = next(src_dir.glob(f"{stem}_{product}.fits*"))
            shutil.copyfile(src, folder / src.name)
    for key, (real, stems) in {**CLONES, **(INTERLEAVED if interleaved else {})}.items():
        folder = out_dir / f"{key[0]:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        names = {p: f"{stems[p]}_{p}.fits" for p in PRODUCTS}
        for product in PRODUCTS:
            src = next(src_dir.glob(f"{REAL[real]}_{product}.fits*"))
            with fits.open(src) as hdul:
                for hdu in hdul:
                    h = hdu.header
                    for kw, p in (("BACKFILE", "pha3"), ("ANCRFILE", "arf3"), ("RESPFILE", "rmf3")):
                        if isinstance(h.get(kw), str) and h[kw].strip().lower() != "none":
                            h[kw] = names[p]
                    if "REGIONID" in h:
                        h["REGIONID"] = f"{key[2]:04d}"
                buf = io.BytesIO()
                hdul.writeto(buf, checksum=True)
            (folder / names[product]).write_bytes(buf.getvalue())
    return MockArchive(out_dir)


# -------------------------------------------------------------------------- catalogue
def catalog_row(key: Key, name: str, rng: np.random.Generator, **o: object) -> dict:
    """One joined row for detection ``key`` of master source ``name`` (``o`` overrides
    observation_source values; ``match_type=`` the association's)."""
    match_type = str(o.pop("match_type", "u"))
    stack = f"acisfJ{key[0]:05d}_001"
    obs = {
        "obsid": key[0], "obi": key[1], "region_id": key[2], "instrument": "ACIS",
        "theta": float(rng.uniform(0.5, 9.0)), "livetime": float(rng.uniform(5e3, 9e4)),
        "src_cnts_aper_b": float(rng.uniform(50, 5000)), "cnts_aper_b": 0.0,
        "flux_significance_b": float(rng.uniform(6, 60)),
        "flux_aper_b": float(10 ** rng.uniform(-15, -12)), "hard_hm": float(rng.uniform(-1, 1)),
        "hard_hs": float(rng.uniform(-1, 1)), "hard_ms": float(rng.uniform(-1, 1)),
        "var_prob_b": float(rng.uniform(0, 1)), "var_index_b": int(rng.integers(0, 10)),
        "flux_bb_aper_b": float(10 ** rng.uniform(-15, -12)),
    }  # fmt: skip
    obs.update(o)
    obs["cnts_aper_b"] = obs["cnts_aper_b"] or obs["src_cnts_aper_b"] * 1.05
    return {
        "master_source": {
            "name": name,
            "ra": float(rng.uniform(0, 360)),
            "dec": float(rng.uniform(-60, 60)),
            "powlaw_gamma": float(rng.uniform(1, 3)),
            "powlaw_nh": float(rng.uniform(0, 2)),
        },  # fmt: skip
        "master_stack_assoc": {
            "name": name,
            "detect_stack_id": stack,
            "region_id": key[2],
            "match_type": match_type,
        },
        "stack_source": {"detect_stack_id": stack, "region_id": key[2]},
        "stack_observation_assoc": {
            "detect_stack_id": stack,
            "region_id": key[2],
            "obsid": key[0],
            "obi": key[1],
        },
        "observation_source": obs,
    }


def synthetic_catalog(keys: list[Key], names: list[str] | None = None, seed: int = 0) -> list[dict]:
    """One unique-match row per detection key, every value passing the default cuts."""
    rng = np.random.default_rng(seed)
    names = names or [f"2CXO J{i // 100:06d}.{i % 100:02d}+000000" for i in range(len(keys))]
    return [catalog_row(k, n, rng) for k, n in zip(keys, names, strict=True)]


def standard_catalog(keys: list[Key], names: list[str]) -> list[dict]:
    """The six detections, one NULL powlaw_nh, three rows each failing one cut, and one
    detection ambiguously matched to two master sources (match_type 'a')."""
    rows = synthetic_catalog(keys, names, seed=6)
    rows[1]["master_source"]["powlaw_nh"] = None  # a catalogue NULL
    rng = np.random.default_rng(7)
    for region, cut in [(1, {"src_cnts_aper_b": 10.0}), (2, {"flux_significance_b": 2.0}),
                        (3, {"theta": 14.0})]:  # fmt: skip
        rows.append(catalog_row((999, 0, region), f"2CXO J999999.{region}+000000", rng, **cut))
    for name in ("2CXO J999998.0+000000", "2CXO J999998.1+000001"):
        rows.append(catalog_row((999, 0, 7), name, rng, match_type="a"))
    return rows
