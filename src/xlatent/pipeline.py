"""The one-command demo: simulate -> train -> encode -> evaluate -> report.

Each stage writes its file into the output directory, so the run can be inspected or resumed
stage by stage with the individual commands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Fewest spectra the demo accepts: the 8-component PCA needs 8 training spectra, and below
#: ~50 the 8 classes are too thin to evaluate (``xlatent demo --n`` has the same floor).
DEMO_MIN_N = 50


@dataclass
class DemoResult:
    """Paths of everything a demo run wrote, plus the metrics and stage timings."""

    out_dir: Path
    set_path: Path
    model_dir: Path
    pca_dir: Path
    latents_path: Path
    eval_dir: Path
    report_path: Path
    metrics: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)


def run_demo(
    out_dir: str | Path = "demo_out",
    n: int = 20000,
    seed: int = 0,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole pipeline on the embedded simulator and return what it wrote.

    Raises ``ValueError`` before writing anything when ``n < DEMO_MIN_N`` or ``epochs < 1``.
    """
    if n < DEMO_MIN_N:
        raise ValueError(f"the demo needs at least {DEMO_MIN_N} spectra, not {n}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    from xlatent.analysis import evaluate
    from xlatent.model import PCABaseline, SpectralAutoencoder
    from xlatent.model.catalog import latent_catalog, write_latents
    from xlatent.physics.simulator import simulate
    from xlatent.report import render_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str) -> Callable[[], None]:
        log(f"[{len(timings) + 1}/5] {name}")
        t0 = time.perf_counter()
        return lambda: timings.__setitem__(name, round(time.perf_counter() - t0, 1))

    done = stage(f"simulate {n} CSC-like spectra (seed {seed})")
    s = simulate(n, seed=seed)  # with a stratified 'split' column drawn from the seed
    set_path = s.write(out / "sim.h5")
    done()

    done = stage("train the transformer autoencoder and the PCA baseline")
    train = s[np.flatnonzero(s.meta["split"].to_numpy() == "train")]
    kwargs = {} if epochs is None else {"epochs": epochs}
    model = SpectralAutoencoder(latent_dim=8, seed=seed, **kwargs).fit(train)
    model_dir = out / "model"
    model.save(model_dir)
    pca = PCABaseline(n_components=8).fit(train)
    pca_dir = out / "pca"
    pca.save(pca_dir)
    done()

    done = stage("encode every spectrum into the 8-d latent catalogue")
    latents_path = out / "latents.parquet"
    write_latents(latent_catalog(s, model.transform(s)), latents_path)
    done()

    done = stage("evaluate latents against hardness ratios, PCA and the true parameters")
    eval_dir = out / "eval"
    metrics = evaluate(s, latents_path, eval_dir, model=model, pca=pca, seed=seed)
    done()

    done = stage("write the HTML report")
    report_path = render_report(eval_dir, out / "report.html")
    done()
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    return DemoResult(
        out,
        set_path,
        model_dir,
        pca_dir,
        latents_path,
        eval_dir,
        Path(report_path),
        metrics,
        timings,
    )
