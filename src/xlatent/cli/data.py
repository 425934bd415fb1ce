"""``xlatent ingest`` and ``xlatent simulate``: spectra in, one SpectrumSet out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from xlatent.cli.parallel_options import Scheduler, Workers
from xlatent.clitools import (
    check_input,
    check_output_dir,
    check_output_file,
    check_positive,
    fail,
    removed_if_empty_on_error,
    usage_error,
)

#: Rows ``xlatent simulate`` simulates and writes at a time.
SIMULATE_BLOCK_ROWS = 20_000

if TYPE_CHECKING:
    from xlatent.core import EnergyGrid, SpectrumSet

#: ``--test-fraction`` of ``ingest`` and ``simulate``.
TestFraction = Annotated[
    float,
    typer.Option(
        "--test-fraction",
        min=0.0,
        max=0.95,
        help="Share of each class marked 'test' in the set's split column (ingest: whole "
        "sources, by CSC name); `xlatent train` fits only the 'train' rows.",
    ),
]


def ingest(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            help="PHA files (CSC *_pha3.fits[.gz], *.pi, *.pha), directories (searched "
            "recursively), globs, Multimodal Universe HDF5 or SpectrumSet files.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="SpectrumSet to write (.h5).")],
    emin: Annotated[float, typer.Option("--emin", help="Grid lower edge, keV.")] = 0.5,
    emax: Annotated[float, typer.Option("--emax", help="Grid upper edge, keV.")] = 8.0,
    bins: Annotated[
        int,
        typer.Option(
            "--bins", min=1, help="Log-spaced grid bins (CSC band edges 1.2/2/7 keV kept)."
        ),
    ] = 128,
    catalog: Annotated[
        Path | None,
        typer.Option(
            "--catalog",
            help="CSC catalogue (`xlatent csc query`) joined by (obsid, obi, region_id).",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Class labels CSV joined by CSC name (TD.csv: CSCv2_name, True_Class).",
        ),
    ] = None,
    test_fraction: TestFraction = 0.2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the split.")] = 0,
    combine_by: Annotated[
        str | None,
        typer.Option(
            "--combine-by",
            help="Sum the spectra sharing this meta column (e.g. 'name': one spectrum per CSC "
            "source): counts, scaled background and exposure add, the ARF is the "
            "exposure-weighted mean; meta lists combined_spec_ids and n_combined.",
        ),
    ] = None,
    workers: Workers = None,
    scheduler: Scheduler = None,
) -> None:
    """Read spectra with their background, ARF and RMF onto one energy grid.

    Counts are apportioned from PI channels onto the grid through the RMF's EBOUNDS; the
    background is scaled to the source region (EXPOSURE x BACKSCAL x AREASCAL); the ARF is
    averaged on each bin. Files that cannot be used are skipped with a one-line reason; the
    exit status is non-zero only when nothing could be ingested. A 'split' column marks
    --test-fraction of the spectra 'test' (whole sources, by CSC name, stratified by class).
    --combine-by sums spectra after the catalogue/labels join (which supplies CSC names).

    Files are read in chunks of 500 by --workers cores (N-1 processes and this one), or by the
    Dask cluster at --scheduler, and streamed to --out (memory stays flat; without
    --combine-by, which needs the whole set in memory); the file is the same for any number
    of workers. Fewer than 400 files are read in one process whatever --workers says (workers
    take a second or two to start).
    """
    check_positive("--emin", emin)
    if not emax > emin:
        usage_error("--emax", f"must be above --emin ({emin:g} keV), not {emax:g}")
    check_input("--catalog", catalog)
    check_input("--labels", labels)
    check_output_file("--out", out)
    from xlatent.core import EnergyGrid
    from xlatent.core.parallel import default_workers

    grid = EnergyGrid.log(emin, emax, bins)
    workers = default_workers() if workers is None else workers
    if combine_by is not None:
        _ingest_combined(paths, out, grid, workers, scheduler, catalog, labels, combine_by,
                         test_fraction, seed)  # fmt: skip
        return
    from xlatent.io.ingest import ingest_to_file

    def finish(s: SpectrumSet) -> SpectrumSet:  # the whole table, before any row is written
        return _join_and_split(s, catalog, labels, test_fraction, seed)

    result = ingest_to_file(paths, out, grid, workers=workers, scheduler=scheduler, finish=finish)
    _report_skipped(result.skipped)
    if result.path is None:
        fail(f"nothing could be ingested from {len(result.skipped)} file(s)")
    typer.echo(result.summary)
    typer.echo(f"ingested {result.n_ingested} spectra, skipped {len(result.skipped)}; wrote {out}")


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)


def _join_and_split(
    s: SpectrumSet, catalog: Path | None, labels: Path | None, test_fraction: float, seed: int
) -> SpectrumSet:
    """The catalogue/labels join, then the split column (a set read back keeps its own)."""
    if catalog is not None or labels is not None:
        from xlatent.io.csc.join import join_files

        s = join_files(s, catalog, labels)
    from xlatent.core.split import split_column

    if "split" not in s.meta:
        s.meta["split"] = split_column(s.meta, test_fraction, seed)
    return s


def _ingest_combined(
    paths: list[str], out: Path, grid: EnergyGrid, workers: int, scheduler: str | None,
    catalog: Path | None, labels: Path | None, combine_by: str, test_fraction: float, seed: int,
) -> None:  # fmt: skip
    """--combine-by: the whole set in memory (sums across files), then join, combine, split."""
    from xlatent.io.ingest import combine_by as combine
    from xlatent.io.ingest import ingest_paths

    result = ingest_paths(paths, grid=grid, exclude=[out], workers=workers, scheduler=scheduler)
    _report_skipped(result.skipped)
    if result.spectrum_set is None:
        fail(f"nothing could be ingested from {len(result.skipped)} file(s)")
    s = result.spectrum_set
    if catalog is not None or labels is not None:
        from xlatent.io.csc.join import join_files

        s = join_files(s, catalog, labels)
    n_read = len(s)
    if combine_by not in s.meta:
        usage_error("--combine-by", f"the spectra have no meta column {combine_by!r}")
    s = combine(s, combine_by)
    typer.echo(f"combined {n_read} spectra into {len(s)} by {combine_by}")
    s = _join_and_split(s, None, None, test_fraction, seed)
    s.write(out)
    typer.echo(s.summary())
    typer.echo(f"ingested {n_read} spectra, skipped {len(result.skipped)}; wrote {out}")


def simulate(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of spectra.")] = 20000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed (same seed, same set).")
    ] = 0,
    out: Annotated[Path, typer.Option("--out", help="Output SpectrumSet (.h5).")] = Path("sim.h5"),
    arf: Annotated[
        Path | None, typer.Option("--arf", help="Real ARF of the one response (with --rmf).")
    ] = None,
    rmf: Annotated[
        Path | None,
        typer.Option(
            "--rmf",
            help="Real RMF: fold every spectrum through this one response (default: "
            "each spectrum its own member of the ACIS response family).",
        ),
    ] = None,
    write_pha: Annotated[
        Path | None,
        typer.Option("--write-pha", help="Also write OGIP PHA/ARF/RMF files into this directory."),
    ] = None,
    class_mix: Annotated[
        Literal["realistic", "balanced"], typer.Option("--class-mix", help="realistic | balanced")
    ] = "realistic",
    test_fraction: TestFraction = 0.2,
    compare_td: Annotated[
        Path | None,
        typer.Option(
            "--compare-td",
            help="TD.csv: class mix and per-class flux/exposure model from it; print the "
            "realism table (sim vs real colours, log Fb, log S/N, variable fraction).",
        ),
    ] = None,
    realism_out: Annotated[
        Path | None,
        typer.Option("--realism-out", help="With --compare-td: write the realism table as JSON."),
    ] = None,
    brightness: Annotated[
        Literal["flux", "counts"],
        typer.Option(
            "--brightness",
            help="flux: per-class fluxes and exposures, detections with S/N >= --snr-min kept; "
            "counts: log-uniform counts in --counts-min..--counts-max, no selection.",
        ),
    ] = "flux",
    snr_min: Annotated[
        float, typer.Option("--snr-min", help="Detection threshold on snr_b (--brightness flux).")
    ] = 3.0,
    pileup: Annotated[
        bool, typer.Option("--pileup/--no-pileup", help="ACIS pile-up of bright sources.")
    ] = True,
    counts_min: Annotated[
        float,
        typer.Option("--counts-min", help="--brightness counts: lowest expected 0.5-7 keV counts."),
    ] = 50.0,
    counts_max: Annotated[
        float,
        typer.Option("--counts-max", help="--brightness counts: highest expected counts."),
    ] = 20000.0,
    responses: Annotated[
        Path | None,
        typer.Option(
            "--responses",
            help="Folder of real OGIP ARF/RMF files (its own files only): paired by the "
            "ANCRFILE/RESPFILE keywords of PHA files there, else by file stem (x.arf + x.rmf, "
            "x_arf3.fits + x_rmf3.fits, .gz allowed), else a lone RMF with every ARF. "
            "Unusable pairs are skipped with a reason.",
        ),
    ] = None,
    real_fraction: Annotated[
        float,
        typer.Option(
            "--real-fraction",
            min=0.0,
            max=1.0,
            help="With --responses: share of the synthetic observations (20 sources each) "
            "folded through a real pair drawn uniformly; the rest draw from the ACIS family.",
        ),
    ] = 1.0,
    instrument_chip: Annotated[
        Literal["FI", "BI"] | None,
        typer.Option(
            "--instrument-chip",
            help="Fix the chip type of every family spectrum: FI (front-illuminated, ACIS-I) "
            "or BI (back-illuminated, ACIS-S3). Default: drawn per source.",
        ),
    ] = None,
    epoch: Annotated[
        float | None,
        typer.Option(
            "--epoch",
            help="Fix the observation date of every family spectrum, decimal year "
            "(1999.6-2025.9; e.g. 2001.76). Default: drawn per observation.",
        ),
    ] = None,
    theta: Annotated[
        float | None,
        typer.Option(
            "--theta",
            help="Fix the off-axis angle of every family spectrum, arcmin (0-15). "
            "Default: drawn per source, 0-10'.",
        ),
    ] = None,
) -> None:
    """Simulate a CSC-like population of 8 source classes folded through Chandra responses.

    By default every spectrum draws its own member of the ACIS response family (chip type,
    observation date, off-axis angle); --responses mixes in real ARF/RMF pairs, --arf/--rmf
    folds everything through one response. Brightness: per-class fluxes and exposures
    folded through each source's own response, only detections (S/N >= --snr-min) kept;
    --brightness counts instead draws counts through the built-in on-axis ACIS-S response
    (--counts-min/--counts-max). Bright sources are piled up (--no-pileup: not).
    """
    check_positive("--snr-min", snr_min)
    check_positive("--counts-min", counts_min)
    check_positive("--counts-max", counts_max)
    if counts_max < counts_min:
        usage_error("--counts-max", f"must be >= --counts-min ({counts_min:g}), not {counts_max:g}")
    if arf is not None and rmf is None:
        usage_error("--arf", "needs --rmf")
    check_input("--arf", arf)
    check_input("--rmf", rmf)
    check_input("--compare-td", compare_td)
    if realism_out is not None:
        if compare_td is None:
            usage_error("--realism-out", "needs --compare-td")
        check_output_file("--realism-out", realism_out)
    check_output_file("--out", out)
    if write_pha is not None:
        check_output_dir("--write-pha", write_pha)
    from xlatent.instrument import Response
    from xlatent.io.ogip_response import read_arf, read_rmf
    from xlatent.physics.observation import check_instrument
    from xlatent.physics.simulator import simulate_blocks as _simulate_blocks

    instrument = {k: v for k, v in (("chip_type", instrument_chip), ("epoch_year", epoch),
                                    ("theta_arcmin", theta)) if v is not None}  # fmt: skip
    if rmf is not None and (responses is not None or instrument):
        usage_error("--rmf", "folds everything through one response; it cannot be combined "
                    "with --responses, --instrument-chip, --epoch or --theta")  # fmt: skip
    try:
        check_instrument(instrument)
    except ValueError as exc:
        usage_error("--epoch" if "epoch" in str(exc) else "--theta", str(exc))
    response = None
    if rmf is not None:
        response = Response(read_arf(arf) if arf is not None else None, read_rmf(rmf))
    real = None
    if responses is not None:
        if not responses.is_dir():
            usage_error("--responses", f"{responses} is not a folder")
        from xlatent.io.response_pairs import find_response_pairs

        found = find_response_pairs(responses)
        for path, reason in found.skipped:
            typer.secho(f"skipped {path}: {reason}", fg=typer.colors.YELLOW, err=True)
        if not found.responses:
            fail(f"no usable ARF/RMF pair in {responses}")
        for a, r, _ in found.paths:
            typer.echo(f"response: {a.name} + {r.name}")
        real = found.responses
    import numpy as np
    import pandas as pd

    from xlatent.core import SpectrumSet, SpectrumSetWriter
    from xlatent.core.spectrumset_view import summary_text

    # Simulated and written a block at a time (memory flat in --n); the same set as one
    # simulate() call with this seed. The summary is gathered on the way (a few numbers a
    # spectrum), so the file is not read again.
    parts: dict[str, list] = {"net_b": [], "exposure": [], "meta": []}
    with removed_if_empty_on_error(write_pha):
        blocks = _simulate_blocks(
            n, seed=seed, class_mix=class_mix, response=response,
            counts_range=(counts_min, counts_max), td_path=compare_td, brightness=brightness,
            snr_min=snr_min, pileup=pileup,
            write_pha=write_pha, test_fraction=test_fraction, progress=True,
            instrument=instrument or None, responses=real, real_fraction=real_fraction,
            block_rows=SIMULATE_BLOCK_ROWS,
        )  # fmt: skip
        block = next(blocks)
        grid = block.grid
        with SpectrumSetWriter(out, grid, block.provenance) as writer:
            while block is not None:  # one block alive at a time
                writer.append(block)
                parts["net_b"].append(block.meta["net_counts_b"].to_numpy(np.float64))
                parts["exposure"].append(block.exposure_s)
                parts["meta"].append(block.meta[["source_class"]])
                del block  # before the next one is simulated
                block = next(blocks, None)
    title = f"<SpectrumSet: {n} spectra on {grid!r}>"
    meta = pd.concat(parts["meta"], ignore_index=True)
    net_b, exposure = np.concatenate(parts["net_b"]), np.concatenate(parts["exposure"])
    typer.echo(summary_text(title, exposure, net_b, meta, has_truth=True))
    typer.echo(f"wrote {out}")
    if compare_td is not None:
        from xlatent.physics.realism import (
            compare_to_td,
            format_table,
            summary_line,
            write_realism,
        )

        with SpectrumSet.open(out) as s:  # its meta
            table = compare_to_td(s, compare_td)
        typer.echo(format_table(table))
        typer.echo(summary_line(table))
        if realism_out is not None:
            write_realism(realism_out, table, compare_td)
            typer.echo(f"wrote {realism_out}")


__all__ = ["ingest", "simulate"]
