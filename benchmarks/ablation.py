"""Ablation of the autoencoder's training options on the demo sky, scored as the demo scores.

    PYTHONPATH=src python benchmarks/ablation.py --set sim.h5 --out ablation_out \\
        [--config NAME ...] [--seed 0] [--threads 1]
    PYTHONPATH=src python benchmarks/ablation.py --out ablation_out --table   # print only

``--quick`` evaluates only what the table reads (see :func:`evaluate_config`);
``--evaluate-only`` (re)evaluates the models already under ``OUT/<config>/model``.
``--polish-from-base`` makes a config with ``polish_epochs`` from its base config's saved model
(the same config without the polish, trained with the same seed): only the polish is run; a
config that adds only encode options (``refine_steps``) to another reuses its model as it is.

The set is the demo's (``xlatent simulate --n 20000 --seed 0 --out sim.h5``, what ``run_demo``
simulates). For each named config (:data:`CONFIGS`: keyword overrides of
``SpectralAutoencoder``, whose training regularisers start off: :func:`train_config`) it does
what ``run_demo`` does: fit on the set's 'train' rows, save the
model, encode every spectrum, ``evaluate`` with the PCA baseline (fitted once, as in the demo);
response invariance is left out (not a target here). ``OUT/<config>/eval/metrics.json`` is kept,
so ``--table`` reprints the table of every config run so far. Columns: latent − hardness
balanced accuracy (8 classes) with its paired 95% interval under both clustering protocols,
the same against the strongest of the three hardness baselines (ratios + log counts, + log
photon flux, alone; named; "–" for evaluations made before they existed),
the probe on the faintest count quintile (latent / hardness), the deviance ratio overall and
its worst count decile, class and response type, training time and seconds per epoch.
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Named configurations: keyword overrides of the SpectralAutoencoder defaults.
CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "consistency_0.3": {"consistency": 0.3},
    "thin_0.3": {"consistency": 0.3, "augment": "thin"},
    "latent_noise_0.3": {"latent_noise": 0.3},
    "latent_noise_0.1": {"latent_noise": 0.1},
    "latent_noise_0.2": {"latent_noise": 0.2},
    "noise_0.2_polish_5": {"latent_noise": 0.2, "polish_epochs": 5},
    "noise_0.2_thin_0.3_polish_5": {
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "polish_epochs": 5,
    },
    "noise_0.2_thin_0.3_counts_300": {
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "latent_noise_counts": 300.0,
    },
    "noise_0.2_thin_0.3_counts_300_polish_5": {
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "latent_noise_counts": 300.0,
        "polish_epochs": 5,
    },
    "noise_0.3_counts_300": {"latent_noise": 0.3, "latent_noise_counts": 300.0},
    "noise_0.3_counts_300_polish_5": {
        "latent_noise": 0.3,
        "latent_noise_counts": 300.0,
        "polish_epochs": 5,
    },
    "noise_0.2_thin_0.3": {"latent_noise": 0.2, "consistency": 0.3, "augment": "thin"},
    # Response invariance (issue 12): latent noise with the area-swap consistency at full weight.
    "noise_0.2_consistency_1": {"latent_noise": 0.2, "consistency": 1.0},
    "wide": {"d_model": 96, "ff_dim": 192},
    # Capacity: is the brightest decile's deviance the 8-number bottleneck or the decoder?
    "latent_16": {"latent_dim": 16},
    "decoder_512x3": {"decoder_hidden": 512, "decoder_layers": 3},
    # The detector's redistribution after the area's edges (learned, +-8 bins).
    "pileup_3": {"pileup_orders": 3},
    "refine_20": {"refine_steps": 20},
    "refine_all_0.2": {"refine_min_counts": 0.0},
    "refine_all_0.3": {"refine_min_counts": 0.0, "refine_prior_sigma": 0.3},
    "refine_all_0.5": {"refine_min_counts": 0.0, "refine_prior_sigma": 0.5},
    "pileup_3_refine_20": {"pileup_orders": 3, "refine_steps": 20},
    "pileup_3_refine_10": {"pileup_orders": 3, "refine_steps": 10},
    "pileup_noise_0.2": {"pileup_orders": 3, "latent_noise": 0.2},
    "pileup_noise_0.2_refine_10": {"pileup_orders": 3, "latent_noise": 0.2, "refine_steps": 10},
    "pileup_noise_0.2_thin_0.3": {
        "pileup_orders": 3,
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
    },
    "pileup_noise_0.2_thin_0.3_refine_10": {
        "pileup_orders": 3,
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "refine_steps": 10,
    },
    "redistribution_8": {"redistribution": 8},
    "noise_0.2_thin_0.3_redistribution_8": {
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "redistribution": 8,
    },
    "epochs_60": {"epochs": 60},
    # 2026-12-03 (fourth round), on the defaults of then (pile-up, one Gauss-Newton step):
    "thin_1": {"consistency": 1.0, "augment": "thin"},
    "consistency_1": {"consistency": 1.0},
    "pileup_noise_0.2_thin_0.3_refine_1": {
        "pileup_orders": 3,
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "refine_steps": 1,
    },
    "pileup_noise_0.2_thin_0.3_refine_1_polish_10": {
        "pileup_orders": 3,
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "refine_steps": 1,
        "polish_epochs": 10,
    },
    "pileup_noise_0.2_thin_0.3_counts_300": {
        "latent_noise": 0.2,
        "consistency": 0.3,
        "augment": "thin",
        "latent_noise_counts": 300.0,
    },
    "pileup_noise_0.2_counts_300": {"latent_noise": 0.2, "latent_noise_counts": 300.0},
    "pileup_noise_0.3_counts_300": {"latent_noise": 0.3, "latent_noise_counts": 300.0},
    "pileup_noise_0.3_thin_0.3_counts_300": {
        "latent_noise": 0.3,
        "consistency": 0.3,
        "augment": "thin",
        "latent_noise_counts": 300.0,
    },
    # 2026-12-03 (fifth round): the contrastive term (model.contrastive) on the defaults.
    # (Its temperature-0.05 row: the same config with xlatent.model.contrastive.TEMPERATURE
    # set to 0.05 before training.)
    "contrastive_0.3": {"contrastive": 0.3},
    "photon_channel": {"photon_channel": True},  # the default since 2026-12-03
    "no_photon_channel": {"photon_channel": False},
    "pileup_noise_0.2_counts_300_refine_10": {
        "latent_noise": 0.2,
        "latent_noise_counts": 300.0,
        "refine_steps": 10,
    },
}
# 2026-12-04 (sixth round): under every-spectrum refinement, a wider prior or a second step on
# the same models (--polish-from-base re-encodes a base config's saved model).
for _base in ("baseline", "pileup_noise_0.2_counts_300", "pileup_noise_0.2_thin_0.3"):
    CONFIGS[f"{_base}_sigma_1"] = {**CONFIGS[_base], "refine_prior_sigma": 1.0}
for _base in ("pileup_noise_0.2_counts_300", "pileup_noise_0.2_thin_0.3"):
    CONFIGS[f"{_base}_steps_2"] = {**CONFIGS[_base], "refine_steps": 2}
# 2026-12-04 (seventh round): stronger count-aware noise, or its shrinking from other counts,
# around pileup_noise_0.3_thin_0.3_counts_300, the defaults since (N0 = 1000 was trained, but
# its evaluation was lost: README).
for _sigma, _n0 in ((0.4, 300), (0.3, 1000), (0.3, 100)):
    CONFIGS[f"pileup_noise_{_sigma}_thin_0.3_counts_{_n0}"] = {
        **CONFIGS["pileup_noise_0.3_thin_0.3_counts_300"],
        "latent_noise": _sigma,
        "latent_noise_counts": float(_n0),
    }


def train_config(name: str, s: Any, out: Path, seed: int, threads: int) -> Any:
    """Fit one config on the set's 'train' rows (as ``run_demo``), save it and its run.json."""
    from xlatent.model import SpectralAutoencoder
    from xlatent.model.options import TRAIN_ADDED

    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    train = s[np.flatnonzero(s.meta["split"].to_numpy() == "train")]
    t0 = time.perf_counter()
    model = SpectralAutoencoder(
        # Every config starts from the training regularisers off (TRAIN_ADDED), as they were
        # until the seventh round made count-aware noise and thin consistency the defaults, so
        # each (baseline included) trains what its README row measured; today's defaults are
        # pileup_noise_0.3_thin_0.3_counts_300.
        **{"latent_dim": 8, **TRAIN_ADDED, **CONFIGS[name]},
        seed=seed,
        num_threads=threads,
        progress=False,
    ).fit(
        train,
        callback=lambda e, r: print(
            f"{name} epoch {e}: val {r['val_deviance_per_bin']:.4f}, {r['elapsed_s']:.0f} s",
            flush=True,
        ),
    )
    train_s = time.perf_counter() - t0
    model.save(d / "model")
    _write_run(d, name, model.history_, threads, train_s)
    return model


#: Options of how a trained model encodes: a config that adds only these to another reuses
#: that config's saved model (``--polish-from-base``).
ENCODE_OPTIONS = ("refine_steps", "refine_min_counts", "refine_prior_sigma")


def _base_config(name: str, leave_out: tuple[str, ...] = ("polish_epochs",)) -> str | None:
    """The config that ``name`` is with ``leave_out`` (its decoder polish) left out, if any."""
    want = {k: v for k, v in CONFIGS[name].items() if k not in leave_out}
    if want == CONFIGS[name]:
        return None
    return next((k for k, v in CONFIGS.items() if v == want), None)


def encode_config(name: str, base: str, out: Path) -> Any:
    """``name`` from ``base``'s saved model with only its encode options set (no training:
    run.json is the base's)."""
    from xlatent.model import SpectralAutoencoder

    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    model = SpectralAutoencoder.load(out / base / "model", device="cpu")
    model.set_params(**{k: v for k, v in CONFIGS[name].items() if k in ENCODE_OPTIONS})
    model.save(d / "model")
    run = json.loads((out / base / "run.json").read_text())
    (d / "run.json").write_text(json.dumps({**run, "encoded_from": base}, indent=2))
    return model


def polish_config(name: str, base: str, s: Any, out: Path, seed: int, threads: int) -> Any:
    """``name`` from ``base``'s saved model: only the decoder polish is run (what ``fit`` does
    after the main run, whose seeded result the saved model is); the training time is the
    base's plus the polish's, and run.json says so (``polished_from``)."""
    import torch

    from xlatent.model import SpectralAutoencoder
    from xlatent.model.calibration import calibrate
    from xlatent.model.distributed import Dist
    from xlatent.model.polish import polish_decoder
    from xlatent.model.preprocess import prepare
    from xlatent.model.training import MemoryBatches, Trainer, split_indices, training_tensors

    if threads:
        torch.set_num_threads(threads)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    model = SpectralAutoencoder.load(out / base / "model", device="cpu")
    if model.seed != seed:
        raise SystemExit(f"{base} was trained with seed {model.seed}, not {seed}")
    model.set_params(**CONFIGS[name])
    train = s[np.flatnonzero(s.meta["split"].to_numpy() == "train")]
    cfg, cpu = model.train_cfg, torch.device("cpu")
    val, rows = split_indices(len(train), cfg)
    trainer = Trainer(cfg, cpu, callback=lambda e, r: print(
        f"{name} polish epoch {e}: val {r['val_deviance_per_bin']:.4f}", flush=True))  # fmt: skip
    trainer.history = list(model.history_)
    best = min(h["val_deviance_per_bin"] for h in model.history_)
    base_s = json.loads((out / base / "run.json").read_text())["train_s"]
    t0 = time.perf_counter()
    source = MemoryBatches(training_tensors(prepare(train), cpu))
    model.history_ = trainer.history + polish_decoder(
        trainer, model.net_, source, rows, val, Dist(device=cpu), best,
        model.history_[-1]["elapsed_s"],
    )  # fmt: skip
    model.calibration_ = calibrate(model, train, val, rows)
    polish_s = time.perf_counter() - t0
    model.save(d / "model")
    _write_run(d, name, model.history_, threads, base_s + polish_s)
    run = json.loads((d / "run.json").read_text())
    run.update(polished_from=base, polish_s=round(polish_s, 1))
    (d / "run.json").write_text(json.dumps(run, indent=2))
    return model


def _write_run(d: Path, name: str, history: list, threads: int, train_s: float) -> None:
    n = len(history)
    run = {"config": CONFIGS[name], "train_s": round(train_s, 1), "n_epochs": n,
           "epoch_s": round(history[-1]["elapsed_s"] / n, 2) if n else None,
           "threads": threads}  # fmt: skip
    (d / "run.json").write_text(json.dumps(run, indent=2))


def evaluate_config(
    name: str, s: Any, out: Path, seed: int, model: Any = None, quick: bool = False
) -> dict[str, Any]:
    """Encode every spectrum and ``evaluate`` as ``run_demo`` does (no response invariance).

    ``quick``: leave out the analyses that come after the clustering protocols and the probe
    (regression, mutual information, interpretation, map). They draw their own random
    streams and feed no column of the table, so its figures are the same either way.
    """
    from xlatent.analysis import evaluate, evaluation
    from xlatent.model import PCABaseline, SpectralAutoencoder
    from xlatent.model.catalog import latent_catalog, write_latents

    d = out / name
    if model is None:
        model = SpectralAutoencoder.load(d / "model")
        if not (d / "run.json").exists():  # training timed by its own history
            h = model.history_
            _write_run(d, name, h, 1, h[-1]["elapsed_s"] if h else 0.0)
    pca_dir = out / "pca"
    if (pca_dir / "model.json").exists():
        pca = PCABaseline.load(pca_dir)
    else:
        train = s[np.flatnonzero(s.meta["split"].to_numpy() == "train")]
        pca = PCABaseline(n_components=8).fit(train)
        pca.save(pca_dir)
    lat = d / "latents.parquet"
    write_latents(latent_catalog(s, model.transform(s)), lat)
    full = evaluation._analyses
    if quick:

        def clustering_only(metrics: dict, fs: dict, z: Any, ctx: Any, hard: Any,
                            projection: str, guarded: Any, n_repeats: int) -> None:  # fmt: skip
            with guarded("clustering"):
                metrics.update(evaluation.protocols.run(fs, ctx, n_repeats))

        evaluation._analyses = clustering_only
    try:
        return evaluate(s, lat, d / "eval", model=model, pca=pca, seed=seed)
    finally:
        evaluation._analyses = full


def _diff(m: dict, protocol: str, baseline: str = "hardness") -> str:
    """latent − ``baseline`` (8 classes) under ``protocol`` with its interval ("–" in an
    evaluation from before the baseline existed)."""
    d = m["differences"][protocol].get(f"latent_minus_{baseline}")
    if d is None:
        return "–"
    lo, hi = d["bacc_8class_ci95"]
    return f"{d['bacc_8class']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


#: The hardness baselines of ``evaluate`` and their short names in the table.
HARDNESS_SETS = {"hardness": "counts", "hardness_flux": "flux", "hardness_ratios": "alone"}


def _strongest(m: dict, protocol: str) -> str:
    """latent − the strongest hardness baseline under ``protocol`` (the smallest difference),
    its interval and which baseline ("–" when only ``hardness`` was evaluated)."""
    diffs = m["differences"][protocol]
    have = {k: diffs[f"latent_minus_{k}"] for k in HARDNESS_SETS if f"latent_minus_{k}" in diffs}
    if len(have) < 2:
        return "–"
    name = min(have, key=lambda k: have[k]["bacc_8class"])
    return f"{_diff(m, protocol, name)} ({HARDNESS_SETS[name]})"


def _worst_decile(r: dict) -> str:
    """The worst count decile's ratio, with its 95% interval where ``evaluate`` gave one."""
    d = max((x for x in r["per_counts_decile"] if x["ratio"] is not None), key=lambda x: x["ratio"])
    ci = d.get("ratio_ci95")
    return f"{d['ratio']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _worst_class_and_response(r: dict) -> tuple[float, float]:
    cls = max(v for v in r["per_class"].values() if v is not None)
    resp = max(
        (v for col in r.get("per_response", {}).values() for v in col.values() if v is not None),
        default=float("nan"),
    )
    return cls, resp


def row(name: str, d: Path) -> str:
    """One table row from ``d/eval/metrics.json`` and ``d/run.json``."""
    m = json.loads((d / "eval" / "metrics.json").read_text())
    run = json.loads((d / "run.json").read_text())
    faint = [m["probe"][f]["bacc_8class_by_counts"][0]["bacc"] for f in ("latent", "hardness")]
    r = m["reconstruction"]["latent"]
    cls, resp = _worst_class_and_response(r)
    k8 = m["clustering"]["latent"]["protocols"]["k8"]["bacc_8class"]
    return (
        f"| {name} | {k8:.3f} | {_diff(m, 'k8')} | {_diff(m, 'tuned')} | "
        f"{_strongest(m, 'k8')} | {_strongest(m, 'tuned')} | "
        f"{m['probe']['latent']['bacc_8class']:.3f} | {faint[0]:.2f} / {faint[1]:.2f} | "
        f"{r['deviance_ratio']:.3f} | {_worst_decile(r)} | {cls:.3f} | {resp:.3f} | "
        f"{run['train_s']:.0f} ({run['n_epochs']} × {run['epoch_s']}) |"
    )


def table(out: Path) -> str:
    """The ablation table (markdown) of every config under ``out`` that has finished."""
    head = (
        "| config | latent k8 | latent − hardness, k8 | latent − hardness, tuned | "
        "latent − strongest hardness, k8 | latent − strongest hardness, tuned | probe | "
        "faintest fifth, probe latent / hardness | deviance ratio | worst decile | "
        "worst class | worst response type | train s (epochs × s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [row(p.name, p) for p in sorted(out.iterdir())
            if (p / "run.json").exists() and (p / "eval" / "metrics.json").exists()]  # fmt: skip
    return "\n".join([head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", help="the demo set (xlatent simulate --n 20000 --seed 0)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", nargs="*", default=None, choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table", action="store_true", help="only print the table")
    ap.add_argument("--quick", action="store_true", help="evaluate only what the table reads")
    ap.add_argument("--evaluate-only", action="store_true", help="evaluate OUT/<config>/model")
    ap.add_argument("--polish-from-base", action="store_true",
                    help="a *_polish_* config: polish its base config's saved model")  # fmt: skip
    args = ap.parse_args()
    out = Path(args.out)
    if not args.table:
        if not args.set:
            ap.error("--set is needed to run configs")
        from xlatent.core import SpectrumSet

        s = SpectrumSet.read(args.set)
        for name in args.config or list(CONFIGS):
            model = None
            base = _base_config(name) if args.polish_from_base else None
            enc_base = _base_config(name, ENCODE_OPTIONS) if args.polish_from_base else None
            if enc_base and not args.evaluate_only:
                model = encode_config(name, enc_base, out)
            elif base and not args.evaluate_only:
                model = polish_config(name, base, s, out, args.seed, args.threads)
            elif not args.evaluate_only:
                model = train_config(name, s, out, args.seed, args.threads)
            evaluate_config(name, s, out, args.seed, model, quick=args.quick)
            print(table(out), flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
