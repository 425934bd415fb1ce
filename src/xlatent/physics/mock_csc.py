"""A mock Chandra Source Catalog archive: simulated detections as CSC per-detection products.

:func:`write_mock_archive` simulates sources with :func:`xlatent.physics.simulator.simulate`
(one call per response: the built-in ACIS-S one and any real ARF/RMF pairs), spreads them over
ObsIDs (one response and exposure each) and writes one folder per ObsID, as the archive's tar::

    <out>/<obsid:05d>/acisf<obsid:05d>_<obi:03d>N<ver:03d>[_e<cycle>]_r<region:04d>_pha3.fits
                                                                       ..._arf3.fits, _rmf3.fits

``pha3`` files have the CSC layout (PRIMARY, SPECTRUM TOTAL, GTI, SPECTRUM BKG; BACKFILE names
the file itself), every HDU with DATASUM/CHECKSUM. One ObsID's detections share one ARF and RMF,
written once and hard-linked under each detection's names. Some sources are seen in two ObsIDs
of one field (same ``name`` and class); a few ObsIDs are interleaved (``_e1``/``_e2``, CYCLE
P/S); a few detections mix processing versions (pha3 ``N022`` naming arf3/rmf3 ``N021``).
Beside them: ``catalog.parquet`` (CSC 2.1 columns) and ``labels.csv`` (TD.csv columns).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from xlatent.core.bands import band_sums
from xlatent.core.spectrumset import SpectrumSet
from xlatent.instrument import Response, default_response
from xlatent.io.csc.query import write_catalog
from xlatent.io.ogip_response import read_arf, read_rmf
from xlatent.io.ogip_write import write_arf, write_csc_pha3, write_hdul, write_rmf
from xlatent.physics.simulator import SOURCES_PER_OBSID, simulate

#: CSC BACKSCAL is the region area in sky pixels over 8192^2 (pixels^2 / 8192^2).
CSC_BACKSCAL_PIXELS = 8192.0**2
#: Processing versions written: the usual one, and the mixed pair (pha3, arf3/rmf3).
VERSION = 1
MIXED_VERSIONS = (22, 21)
KEY = ["obsid", "obi", "region_id"]


@dataclass
class MockArchive:
    """What :func:`write_mock_archive` wrote, and the truth to check a rehearsal against.

    ``truth``: one row per detection, indexed by ``(obsid, obi, region_id)``: ``name``,
    ``source_class``, ``cycle`` (0, or 1/2 interleaved), ``pha3``/``arf3``/``rmf3`` paths,
    ``response``, ``exposure_s``, and per CSC band ``counts_<b>``, ``background_<b>`` (scaled
    to the source region) and ``net_counts_<b>`` of the simulated spectra. ``spectra``: the
    simulated set, rows in ``truth`` order (meta keys and ``source_file`` set to the archive's).
    """

    root: Path
    catalog_path: Path
    labels_path: Path
    truth: pd.DataFrame
    spectra: SpectrumSet
    responses: list[str]

    @property
    def n_detections(self) -> int:
        return len(self.truth)

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.glob("[0-9]*/*") if p.is_file())

    def size_bytes(self) -> tuple[int, int]:
        """(apparent bytes of all product files, bytes on disk counting hard links once)."""
        apparent, inodes = 0, {}
        for p in self.files():
            st = p.stat()
            apparent += st.st_size
            inodes[(st.st_dev, st.st_ino)] = st.st_size
        return apparent, sum(inodes.values())


def _load_responses(
    responses: list[tuple[str | Path, str | Path]] | None, include_builtin: bool
) -> list[tuple[str, Response]]:
    out = [("builtin:acis-s", default_response())] if include_builtin else []
    for arf, rmf in responses or []:
        out.append((Path(rmf).name, Response(read_arf(arf, cache=None), read_rmf(rmf, cache=None))))
    if not out:
        raise ValueError("no response: give responses or include_builtin=True")
    return out


def _obsid_sizes(n: int, n_obsids: int, rng: np.random.Generator) -> np.ndarray:
    """Detections per ObsID: at least 1, at most SOURCES_PER_OBSID, summing to ``n``."""
    if not 1 <= n_obsids <= n or n_obsids * SOURCES_PER_OBSID < n:
        raise ValueError(f"n_obsids must be in [{-(-n // SOURCES_PER_OBSID)}, {n}], not {n_obsids}")
    sizes = rng.multinomial(n - n_obsids, np.full(n_obsids, 1.0 / n_obsids)) + 1
    while sizes.max() > SOURCES_PER_OBSID:
        big, small = int(sizes.argmax()), int(sizes.argmin())
        sizes[big] -= 1
        sizes[small] += 1
    return sizes


def _pack(sizes: list[int]) -> tuple[np.ndarray, int]:
    """First-fit packing of ObsIDs into simulator exposure blocks (SOURCES_PER_OBSID rows
    share one exposure): the first simulated row of each ObsID, and the rows to simulate."""
    room: list[int] = []
    start = np.zeros(len(sizes), dtype=np.int64)
    for i in np.argsort(sizes)[::-1]:
        b = next((j for j, r in enumerate(room) if r >= sizes[i]), None)
        if b is None:
            room.append(SOURCES_PER_OBSID)
            b = len(room) - 1
        start[i] = b * SOURCES_PER_OBSID + SOURCES_PER_OBSID - room[b]
        room[b] -= sizes[i]
    return start, len(room) * SOURCES_PER_OBSID


def _csc_name(ra: float, dec: float) -> str:
    """``2CXO Jhhmmss.s+ddmmss`` (truncated, as the CSC names its sources)."""
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = ((h * 60) % 1) * 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d % 1) * 60)
    ds = int(((d * 60) % 1) * 60)
    return f"2CXO J{hh:02d}{mm:02d}{int(ss * 10) / 10:04.1f}{sign}{dd:02d}{dm:02d}{ds:02d}"


def _channel_counts(sim_dir: Path, spec_id: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-channel source and background counts and BACKSCALs the simulator wrote."""
    with fits.open(sim_dir / f"{spec_id}.pha", memmap=False) as s:
        src, bs = np.asarray(s[1].data["COUNTS"]), float(s[1].header["BACKSCAL"])
    with fits.open(sim_dir / f"{spec_id}_bkg.pha", memmap=False) as b:
        bkg, bb = np.asarray(b[1].data["COUNTS"]), float(b[1].header["BACKSCAL"])
    return src, bkg, bs, bb


def _layout(n: int, n_obsids: int, n_resp: int, rng: np.random.Generator, **opt) -> pd.DataFrame:
    """One row per detection: ObsID (number, obi, response, interleaving) and region id."""
    sizes = _obsid_sizes(n, n_obsids, rng)
    obsids = rng.choice(np.arange(100, 30000), size=n_obsids, replace=False)
    obis = np.where(rng.random(n_obsids) < 0.1, 1, 0)
    resp = rng.permutation(np.arange(n_obsids) % n_resp)
    n_il = opt["n_interleaved"]
    n_il = max(1, n_obsids // 40) if n_il is None else n_il
    multi = np.flatnonzero(sizes >= 2)
    interleaved = set(rng.choice(multi, size=min(n_il, multi.size), replace=False).tolist())
    rows = []
    for j in range(n_obsids):
        regions = np.sort(rng.choice(np.arange(1, 4 * SOURCES_PER_OBSID), sizes[j], replace=False))
        for k, rid in enumerate(regions):
            cycle = (k % 2) + 1 if j in interleaved else 0
            rows.append((int(obsids[j]), int(obis[j]), int(rid), j, int(resp[j]), cycle))
    frame = pd.DataFrame(rows, columns=[*KEY, "obs_index", "response_index", "cycle"])
    n_mixed = opt["n_mixed_version"]
    n_mixed = max(1, n // 200) if n_mixed is None else n_mixed
    mixed = rng.choice(n, size=min(n_mixed, n), replace=False)
    frame["pha_version"] = VERSION
    frame["resp_version"] = VERSION
    frame.loc[mixed, "pha_version"], frame.loc[mixed, "resp_version"] = MIXED_VERSIONS
    return frame


def _simulate_all(
    layout: pd.DataFrame, responses: list[tuple[str, Response]], seed: int, **sim_kwargs
) -> tuple[SpectrumSet, list[tuple[np.ndarray, np.ndarray, float, float]]]:
    """Simulate every detection through its ObsID's response; per-channel draws kept."""
    children = np.random.SeedSequence([seed, 17]).generate_state(len(responses))
    sets: list[SpectrumSet] = []
    rows: list[int] = []
    channels: list[tuple[np.ndarray, np.ndarray, float, float]] = []
    for k, (_, response) in enumerate(responses):
        mine = layout[layout["response_index"] == k]
        if mine.empty:
            continue
        obs = mine.groupby("obs_index").size()
        start, n_sim = _pack(obs.tolist())
        first = dict(zip(obs.index, start, strict=True))
        offset = mine.groupby("obs_index").cumcount().to_numpy()
        take = np.array([first[o] for o in mine["obs_index"]]) + offset
        with tempfile.TemporaryDirectory(prefix="xlatent-mock-") as tmp:
            sim = simulate(
                n_sim, seed=int(children[k]), response=response, write_pha=tmp, **sim_kwargs
            )
            sets.append(sim[take])
            channels += [_channel_counts(Path(tmp), sim.meta["spec_id"][i]) for i in take]
        rows += mine.index.tolist()
    out = SpectrumSet.concat(sets)
    order = np.argsort(np.asarray(rows))
    return out[order], [channels[i] for i in order]


def _positions(layout: pd.DataFrame, rng: np.random.Generator, repeat_fraction: float) -> None:
    """Field pointings, source positions and CSC names; sources of paired ObsIDs (the same
    field observed twice) that share a class get the same name (in place)."""
    n_obs = int(layout["obs_index"].max()) + 1
    ra0 = rng.uniform(0, 360, n_obs)
    dec0 = np.degrees(np.arcsin(rng.uniform(-1, 1, n_obs)))
    order = rng.permutation(n_obs)
    n_pairs = int(round(repeat_fraction * n_obs / 2))
    pairs = [(int(order[2 * i]), int(order[2 * i + 1])) for i in range(n_pairs)]
    for a, b in pairs:
        ra0[b], dec0[b] = ra0[a], dec0[a]
    r = np.abs(rng.normal(0, 4.0, len(layout)))  # arcmin off axis
    phi = rng.uniform(0, 2 * np.pi, len(layout))
    o = layout["obs_index"].to_numpy()
    dec = np.clip(dec0[o] + r / 60 * np.sin(phi), -89.9, 89.9)
    ra = (ra0[o] + r / 60 * np.cos(phi) / np.cos(np.radians(dec))) % 360
    layout["ra"], layout["dec"], layout["theta"] = ra, dec, r
    for a, b in pairs:
        for cls in set(layout.loc[layout["obs_index"] == a, "source_class"]):
            ia = layout.index[(layout["obs_index"] == a) & (layout["source_class"] == cls)]
            ib = layout.index[(layout["obs_index"] == b) & (layout["source_class"] == cls)]
            for i, j in zip(ia, ib, strict=False):
                layout.loc[j, ["ra", "dec", "theta"]] = layout.loc[i, ["ra", "dec", "theta"]]
    names = [_csc_name(x, y) for x, y in zip(layout["ra"], layout["dec"], strict=True)]
    # Distinct positions that truncate to one name (rare) would merge two sources: suffix them.
    seen: dict[str, tuple[float, float]] = {}
    for i, (name, x, y) in enumerate(zip(names, layout["ra"], layout["dec"], strict=True)):
        if seen.setdefault(name, (x, y)) != (x, y):
            names[i] = f"{name}{chr(65 + i % 26)}"
    layout["name"] = names


def _stems(row: pd.Series) -> tuple[str, str]:
    cyc = f"_e{row.cycle}" if row.cycle else ""
    base = f"acisf{row.obsid:05d}_{row.obi:03d}N{{:03d}}{cyc}_r{row.region_id:04d}"
    return base.format(row.pha_version), base.format(row.resp_version)


def _write_products(
    root: Path,
    layout: pd.DataFrame,
    channels: list[tuple[np.ndarray, np.ndarray, float, float]],
    spectra: SpectrumSet,
    responses: list[tuple[str, Response]],
    *,
    gzip: bool,
    link_responses: bool,
    object_is_name: bool,
) -> list[tuple[str, str, str]]:
    """Every detection's pha3/arf3/rmf3; returns their paths in ``layout`` order."""
    ext = ".fits.gz" if gzip else ".fits"
    templates: dict[int, tuple[fits.HDUList, fits.HDUList]] = {}
    with tempfile.TemporaryDirectory(prefix="xlatent-mock-") as tmp:
        for k, (_, response) in enumerate(responses):  # each response turned into FITS once
            arf_t, rmf_t = Path(tmp) / f"{k}.arf", Path(tmp) / f"{k}.rmf"
            write_arf(arf_t, response.arf)
            write_rmf(rmf_t, response.rmf, extname="RSP_MATRIX")
            templates[k] = (fits.open(arf_t, memmap=False), fits.open(rmf_t, memmap=False))
            for h in templates[k]:
                h.readall()
    written: dict[tuple[int, int], tuple[Path, Path]] = {}  # (obs_index, version) -> arf, rmf
    out = []
    for i, row in enumerate(layout.itertuples(index=False)):
        folder = root / f"{row.obsid:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        pha_stem, resp_stem = _stems(row)
        pha, arf, rmf = (folder / f"{s}_{p}3{ext}" for s, p in
                         ((pha_stem, "pha"), (resp_stem, "arf"), (resp_stem, "rmf")))  # fmt: skip
        ids = {"MISSION": "AXAF", "OBS_ID": str(row.obsid), "OBI_NUM": row.obi}
        have = written.get((row.obs_index, row.resp_version))
        if have is None:
            for hdul, target in zip(templates[row.response_index], (arf, rmf), strict=True):
                for h in hdul:
                    h.header.update(ids)
                write_hdul(target, hdul)
            written[(row.obs_index, row.resp_version)] = (arf, rmf)
        else:
            for src, dst in zip(have, (arf, rmf), strict=True):
                _link_or_copy(src, dst, link_responses)
        src, bkg, bs_src, bs_bkg = channels[i]
        cyc = "S" if row.cycle == 2 else "P"
        extra = {
            **ids,
            "REGIONID": f"{row.region_id:04d}",
            "CYCLE": cyc,
            "OBJECT": row.name if object_is_name else "CSC",
            "DS_IDENT": f"ADS/Sa.CXO#CSC/Reg/{row.obsid}-{row.obi}-{cyc}-1-{row.region_id:04d}",
            "RA": float(row.ra),
            "DEC": float(row.dec),
        }
        write_csc_pha3(
            pha, src, bkg, float(spectra.exposure_s[i]),
            bs_src / CSC_BACKSCAL_PIXELS, bs_bkg / CSC_BACKSCAL_PIXELS,
            ancrfile=arf.name.removesuffix(".gz"), respfile=rmf.name.removesuffix(".gz"),
            first_channel=responses[row.response_index][1].rmf.first_channel, extra=extra,
        )  # fmt: skip
        out.append((str(pha), str(arf), str(rmf)))
    for hdul in (h for pair in templates.values() for h in pair):
        hdul.close()
    return out


def _link_or_copy(src: Path, dst: Path, link: bool) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst) if link else shutil.copyfile(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _catalog(layout: pd.DataFrame, spectra: SpectrumSet) -> pd.DataFrame:
    """CSC 2.1 per-detection rows (the columns ``xlatent csc query`` returns, and
    ``match_type``) with values from the simulation."""
    m = spectra.meta
    net_b = m["net_counts_b"].to_numpy()
    bkg_b = band_sums(spectra.background, spectra.grid)["b"]
    with np.errstate(divide="ignore", invalid="ignore"):
        signif = np.where(net_b > 0, net_b / np.sqrt(net_b + 2 * bkg_b), 0.0)
    return pd.DataFrame(
        {
            "name": layout["name"], "ra": layout["ra"], "dec": layout["dec"],
            "obsid": layout["obsid"], "obi": layout["obi"], "region_id": layout["region_id"],
            "instrument": "ACIS", "theta": layout["theta"], "livetime": spectra.exposure_s,
            "src_cnts_aper_b": net_b, "flux_significance_b": signif,
            "flux_aper_b": m["truth_flux_b"].to_numpy(),
            "hard_hm": m["hr_counts_hm"].to_numpy(), "hard_hs": m["hr_counts_hs"].to_numpy(),
            "hard_ms": m["hr_counts_ms"].to_numpy(),
            "var_prob_b": m["var_prob_b"].to_numpy(), "var_index_b": m["var_index_b"].to_numpy(),
            "powlaw_gamma": m["truth_gamma"].to_numpy(),
            "powlaw_nh": 100.0 * m["truth_nh_1e22"].to_numpy(),  # CSC unit: 1e20 cm^-2
            "match_type": "u",
        }
    )  # fmt: skip


def write_mock_archive(
    out_dir: str | Path,
    n_detections: int,
    seed: int = 0,
    responses: list[tuple[str | Path, str | Path]] | None = None,
    n_obsids: int | None = None,
    *,
    include_builtin: bool = True,
    repeat_fraction: float = 0.3,
    n_interleaved: int | None = None,
    n_mixed_version: int | None = None,
    gzip: bool = False,
    link_responses: bool = True,
    object_is_name: bool = False,
    class_mix: str = "realistic",
    counts_range: tuple[float, float] = (50.0, 20000.0),
) -> MockArchive:
    """Simulate ``n_detections`` CSC detections and write them as a CSC archive in ``out_dir``.

    ``responses``: (ARF, RMF) file pairs folded through besides the built-in ACIS-S response
    (``include_builtin``); each ObsID uses one. ``n_obsids`` (default ``n/8``): ObsIDs, each
    of 1-20 detections. ``repeat_fraction``: share of ObsIDs paired with another of the same
    field, whose same-class sources become one CSC source seen twice. ``n_interleaved``
    (default ``n_obsids/40``, at least 1) interleaved-mode ObsIDs (``_e1``/``_e2``);
    ``n_mixed_version`` (default ``n/200``, at least 1) detections with pha3 N022 and
    arf3/rmf3 N021. ``gzip``: ``.fits.gz`` products. ``object_is_name``: OBJECT holds the
    CSC name (the archive's files say ``CSC``). The same arguments give the same archive.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 16]))
    loaded = _load_responses(responses, include_builtin)
    n_obsids = max(1, round(n_detections / 8)) if n_obsids is None else n_obsids
    n_obsids = max(n_obsids, -(-n_detections // SOURCES_PER_OBSID))
    layout = _layout(
        n_detections, n_obsids, len(loaded), rng,
        n_interleaved=n_interleaved, n_mixed_version=n_mixed_version,
    )  # fmt: skip
    spectra, channels = _simulate_all(
        layout, loaded, seed, class_mix=class_mix, counts_range=counts_range, brightness="counts"
    )
    layout["source_class"] = spectra.meta["source_class"].to_numpy()
    _positions(layout, rng, repeat_fraction)
    files = _write_products(
        root, layout, channels, spectra, loaded,
        gzip=gzip, link_responses=link_responses, object_is_name=object_is_name,
    )  # fmt: skip
    meta = spectra.meta
    for col in ("obsid", "obi", "region_id", "name"):
        meta[col] = layout[col].to_numpy()
    meta["source_file"] = [f[0] for f in files]
    catalog_path = write_catalog(_catalog(layout, spectra), root / "catalog.parquet")
    labels = layout.drop_duplicates("name")
    first = labels.index.to_numpy()
    td = pd.DataFrame({"CSCv2_name": labels["name"].to_numpy()})
    for code in ("s", "m", "h", "b"):
        td[f"F{code}"] = meta[f"truth_flux_{code}"].to_numpy()[first]
    td["True_Class"] = labels["source_class"].to_numpy()
    td.to_csv(labels_path := root / "labels.csv", index=False)
    truth = layout[[*KEY, "name", "source_class", "cycle"]].copy()
    truth["pha3"], truth["arf3"], truth["rmf3"] = zip(*files, strict=True)
    truth["response"] = [loaded[k][0] for k in layout["response_index"]]
    truth["exposure_s"] = spectra.exposure_s
    counts, background = (band_sums(a, spectra.grid) for a in (spectra.counts, spectra.background))
    for code in ("s", "m", "h", "b"):
        truth[f"counts_{code}"], truth[f"background_{code}"] = counts[code], background[code]
        truth[f"net_counts_{code}"] = meta[f"net_counts_{code}"].to_numpy()
    spectra.add_provenance("write_mock_archive", root=str(root), n=n_detections, seed=seed)
    return MockArchive(
        root, catalog_path, labels_path, truth.set_index(KEY), spectra, [r[0] for r in loaded]
    )
