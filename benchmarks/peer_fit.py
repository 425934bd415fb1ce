"""Against what astronomers do today: a Sherpa fit of an absorbed power law (W-stat) versus
latents + gradient boosting, on the same simulated spectra.

    PYTHONPATH=src python benchmarks/peer_fit.py [--n-fit 250] [--model DIR] [--out peer.json]

Optional: without Sherpa (``pip install 'xlatent[peer]'``; it builds from source once the
Debian packages byacc, flex, libfftw3-dev and pkg-config are installed) it prints
``skipped: Sherpa not installed`` and exits 0.

1. The test sky: ``simulate(..., responses=[ObsID 1575's ARF/RMF], real_fraction=1)`` (seed
   ``--seed``) writes every spectrum as OGIP PHA files with a background PHA and the real
   ARF/RMF (``xlatent.io.ogip_write.PhaDirWriter``); the first ``--n-fit`` spectra with a
   power-law component (finite ``truth_gamma``: AGN, HMXB primaries, LMXB and NS components)
   are compared.
2. Sherpa: each PHA loaded with ``load_pha`` (background and response from its header),
   grouped to at least one count per bin, 0.5-8 keV (the latent grid's band), W-stat,
   Levenberg-Marquardt, source ``xabs * powlaw1d``. Sherpa's pip build has no XSPEC models,
   so ``xabs`` is a Sherpa user model on xlatent's own cross-sections
   (``xlatent.physics.absorption``, ``angr``): the same absorption as the simulator's.
   Starts N_H = 0.1e22, Gamma = 1.7, amplitude from ``guess``; bounds N_H in
   [``--nh-min``, 200] x 1e22 cm^-2, Gamma in [-1, 5].
3. Latents: a trained autoencoder (``--model DIR``, else ``SpectralAutoencoder.pretrained()``
   when this installation ships one, else one trained here with the demo's options on the
   default sky, ``simulate(20000, seed=0)``'s train split; ``--save-model`` keeps it), and two
   scikit-learn ``HistGradientBoostingRegressor`` (log10 N_H, Gamma) trained on the latents
   of *other* simulated spectra with a power-law component (default sky, ``--train-seed``).

Metrics: median |dlog10 N_H| (dex), share off by > 1 dex, median |dGamma|, time per spectrum,
failed fits. Caveat: the fitted model is simpler than the simulated truth (multi-component
sources, lines, partial covering, AGN absorbers at their redshift, pile-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

SKIP_MESSAGE = "skipped: Sherpa not installed (pip install 'xlatent[peer]')"
REPO_ROOT = Path(__file__).resolve().parents[1]
NH_MAX_1E22 = 200.0
GAMMA_BOUNDS = (-1.0, 5.0)
#: Classes whose absorber sits at the source redshift (the z = 0 fit underestimates it).
REDSHIFTED = ("AGN",)


def sherpa_ui() -> ModuleType | None:
    """``sherpa.astro.ui`` with its chatter silenced, or None when Sherpa is not installed."""
    try:
        import sherpa  # noqa: F401  (sets up the "sherpa" logger, which the next line quiets)
    except ImportError:
        return None
    logging.getLogger("sherpa").setLevel(logging.ERROR)  # no ds9/XSPEC notes, no "read ARF"
    from sherpa.astro import ui

    return ui


@lru_cache(maxsize=1)
def _xabs_class() -> type:
    """The Sherpa model class of xlatent's absorption (defined on first use: Sherpa is optional)."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter

    from xlatent.physics.absorption import cross_section_cm2

    class XlatentAbs(ArithmeticModel):
        """exp(-N_H sigma(E)), sigma from xlatent.physics.absorption (angr), N_H in 1e22 cm^-2.

        Evaluated at each bin's mid-energy (the simulator sub-samples 10 eV bins; the
        difference is far below the N_H errors at issue here)."""

        def __init__(self, name: str = "xabs") -> None:
            self.nh = Parameter(name, "nh", 0.1, min=0.0, max=NH_MAX_1E22, hard_min=0.0,
                                units="1e22 cm^-2")  # fmt: skip
            self._sigma: dict[tuple[int, float, float], np.ndarray] = {}
            ArithmeticModel.__init__(self, name, (self.nh,))

        def calc(self, p: Any, xlo: Any, xhi: Any = None, *args: Any, **kwargs: Any) -> Any:
            lo = np.asarray(xlo, dtype=np.float64)
            e_kev = lo if xhi is None else 0.5 * (lo + np.asarray(xhi, dtype=np.float64))
            key = (e_kev.size, float(e_kev[0]), float(e_kev[-1]))
            sigma = self._sigma.get(key)  # the same response grid every call: compute once
            if sigma is None:
                sigma = cross_section_cm2(np.clip(e_kev, 0.1, 20.0)) * 1e22
                self._sigma[key] = sigma
            return np.exp(-p[0] * sigma)

    return XlatentAbs


def absorption_model(name: str = "xabs") -> Any:
    """A Sherpa model instance of xlatent's photoelectric absorption (needs Sherpa)."""
    return _xabs_class()(name)


@dataclass
class FitResult:
    nh_1e22: float
    gamma: float
    ok: bool
    fit_s: float
    load_s: float
    message: str = ""
    improved_by_restart: bool = False


def fit_pha(
    ui: ModuleType,
    path: str | Path,
    *,
    band_kev: tuple[float, float] = (0.5, 8.0),
    nh_min_1e22: float = 1e-3,
    nh_restarts_1e22: tuple[float, ...] = (),
) -> FitResult:
    """Fit ``xabs * powlaw1d`` with W-stat to one PHA file (its background and response
    from the header keywords); a failure is reported, not raised. ``nh_restarts_1e22``:
    fit again from each of these N_H (Gamma 1.7) and keep the lowest statistic."""
    from sherpa.models.basic import PowLaw1D

    t0 = time.perf_counter()
    try:
        ui.load_pha(1, str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file counts as a failed fit
        return FitResult(np.nan, np.nan, False, 0.0, time.perf_counter() - t0, str(exc))
    t1 = time.perf_counter()
    try:
        ui.set_stat("wstat")
        ui.set_method("levmar")
        ui.group_counts(1, 1)
        ui.notice_id(1, *band_kev)
        absorber, pl = absorption_model("xabs"), PowLaw1D("pl")
        absorber.nh.set(val=0.1, min=nh_min_1e22)
        pl.gamma.set(val=1.7, min=GAMMA_BOUNDS[0], max=GAMMA_BOUNDS[1])
        ui.set_source(1, absorber * pl)
        ui.guess(1, pl)
        ui.fit(1)
        res = ui.get_fit_results()
        ok = bool(res.succeeded) and np.isfinite(absorber.nh.val) and np.isfinite(pl.gamma.val)
        msg = "" if ok else str(res.message)
        out = FitResult(float(absorber.nh.val), float(pl.gamma.val), ok, 0.0, t1 - t0, msg)
        best = float(res.statval)
        for nh0 in nh_restarts_1e22:
            absorber.nh.val, pl.gamma.val = nh0, 1.7
            try:
                ui.fit(1)
            except Exception:  # noqa: BLE001 - a failed restart leaves the best fit so far
                continue
            res = ui.get_fit_results()
            if res.succeeded and res.statval < best - 0.5:  # a better minimum, not rounding
                best = float(res.statval)
                out.nh_1e22, out.gamma = float(absorber.nh.val), float(pl.gamma.val)
                out.ok, out.message, out.improved_by_restart = True, "", True
    except Exception as exc:  # noqa: BLE001 - count it, keep going
        out = FitResult(np.nan, np.nan, False, 0.0, t1 - t0, f"{type(exc).__name__}: {exc}")
    out.fit_s = time.perf_counter() - t1
    return out


def recovery(
    nh_true_1e22: np.ndarray, nh_est_1e22: np.ndarray, gamma_true: np.ndarray,
    gamma_est: np.ndarray, nh_floor_1e22: float = 1e-3,
) -> dict[str, float]:  # fmt: skip
    """Median |delta log10 N_H| (dex), share off by > 1 dex, median |delta Gamma|; N_H
    estimates below ``nh_floor_1e22`` count as the floor (a fit pegged at zero)."""
    dlog = np.abs(
        np.log10(np.maximum(nh_est_1e22, nh_floor_1e22)) - np.log10(np.asarray(nh_true_1e22))
    )
    dgamma = np.abs(np.asarray(gamma_est) - np.asarray(gamma_true))
    return {
        "n": int(dlog.size),
        "median_abs_dlog_nh_dex": float(np.median(dlog)) if dlog.size else np.nan,
        "frac_off_1dex": float(np.mean(dlog > 1.0)) if dlog.size else np.nan,
        "median_abs_dgamma": float(np.median(dgamma)) if dgamma.size else np.nan,
    }


def real_responses(folder: Path, obsid: int) -> list[Any]:
    """The ARF/RMF pairs of ``folder`` (only ObsID ``obsid``'s unless it is 0)."""
    from xlatent.io.response_pairs import find_response_pairs

    found = find_response_pairs(folder)
    keep = [
        r for r, (arf, _, _) in zip(found.responses, found.paths, strict=True)
        if obsid == 0 or f"{obsid:05d}" in arf.name or arf.name.startswith(f"{obsid}.")
    ]  # fmt: skip
    if not keep:
        raise SystemExit(f"{folder}: no ARF/RMF pair of ObsID {obsid}")
    return keep


def latent_model(args: argparse.Namespace) -> tuple[Any, str]:
    """``--model DIR``, else the shipped pretrained model, else one trained like the demo's."""
    from xlatent.model import CheckpointError, SpectralAutoencoder, load_model

    if args.model:
        return load_model(args.model), f"--model {args.model}"
    pretrained = getattr(SpectralAutoencoder, "pretrained", None)
    if pretrained is not None:
        try:
            return pretrained(), "SpectralAutoencoder.pretrained()"
        except (CheckpointError, OSError) as exc:
            print(f"no pretrained model ({exc}); training one with the demo's options")
    from xlatent.physics.simulator import simulate

    t0 = time.perf_counter()
    s = simulate(args.demo_n, seed=0)
    train = s[np.flatnonzero(s.meta["split"].to_numpy() == "train")]
    model = SpectralAutoencoder(latent_dim=8, seed=0).fit(train)
    if args.save_model:
        model.save(args.save_model)
    took = time.perf_counter() - t0
    return model, f"trained here: demo options, simulate({args.demo_n}, seed=0) ({took:.0f} s)"


def power_law_rows(s: Any) -> np.ndarray:  # a finite truth_gamma: a power-law component
    return np.flatnonzero(np.isfinite(s.meta["truth_gamma"].to_numpy(dtype=float)))


def latents_side(model: Any, train: Any, test: Any, seed: int) -> dict[str, Any]:
    """Gradient boosting on ``train``'s latents, predicting ``test``; timings per spectrum."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    model.transform(test[np.arange(min(64, len(test)))])  # warm-up, not timed
    t0 = time.perf_counter()
    z_train = model.transform(train)
    t_encode = time.perf_counter() - t0
    y_nh = np.log10(train.meta["truth_nh_1e22"].to_numpy(dtype=float))
    y_gamma = train.meta["truth_gamma"].to_numpy(dtype=float)
    regs = [HistGradientBoostingRegressor(random_state=seed).fit(z_train, y)
            for y in (y_nh, y_gamma)]  # fmt: skip
    t0 = time.perf_counter()
    for reg in regs:
        reg.predict(z_train)
    t_predict = time.perf_counter() - t0
    z_test = model.transform(test)
    log_nh, gamma = (reg.predict(z_test) for reg in regs)
    return {
        "nh_1e22": 10.0**log_nh,
        "gamma": gamma,
        "per_spectrum_s": (t_encode + t_predict) / len(train),  # at batch scale
        "encode_share": t_encode / (t_encode + t_predict),
        "n_timed": len(train),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    shared = Path(os.environ.get("XLATENT_SHARED", REPO_ROOT.parent / "shared"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-fit", type=int, default=250, help="power-law spectra to fit (250)")
    ap.add_argument("--seed", type=int, default=2, help="test sky seed (2)")
    ap.add_argument("--responses", type=Path, default=shared / "data" / "real_spectra")
    ap.add_argument("--obsid", type=int, default=1575, help="its ARF/RMF (0: every pair)")
    ap.add_argument("--model", help="a trained model directory (default: pretrained/demo)")
    ap.add_argument("--save-model", help="keep a model trained here in this directory")
    ap.add_argument("--demo-n", type=int, default=20000, help="default sky size for training")
    ap.add_argument("--train-n", type=int, default=20000, help="regressor sky size (20000)")
    ap.add_argument("--train-seed", type=int, default=1, help="regressor sky seed (1)")
    ap.add_argument("--nh-min", type=float, default=1e-3, help="fit's N_H floor, 1e22 cm^-2")
    ap.add_argument("--nh-restarts", type=float, nargs="*", default=[],
                    help="also fit from these N_H (1e22 cm^-2), keep the best")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pha-dir", help="write the PHA files here (default: a temporary folder)")
    ap.add_argument("--out", help="also write the figures as JSON")
    return ap.parse_args(argv)


def _row(name: str, m: dict[str, float], time_text: str = "") -> str:
    return (
        f"  {name:<29} {m['median_abs_dlog_nh_dex']:8.3f} {100 * m['frac_off_1dex']:7.1f}% "
        f"{m['median_abs_dgamma']:8.3f}   {time_text}"
    )


def compare(
    meta: Any, fits: list[FitResult], lat: dict[str, Any], nh_min_1e22: float
) -> dict[str, Any]:
    """Both methods' recovery on the spectra whose fit succeeded, overall and by group."""
    ok = np.array([f.ok for f in fits])
    fit_nh = np.array([f.nh_1e22 for f in fits])
    fit_gamma = np.array([f.gamma for f in fits])
    truth_nh = meta["truth_nh_1e22"].to_numpy(dtype=float)
    truth_gamma = meta["truth_gamma"].to_numpy(dtype=float)
    redshifted = meta["source_class"].isin(REDSHIFTED).to_numpy()
    net = meta["net_counts_b"].to_numpy(dtype=float)
    groups = {
        "all": np.ones(len(meta), bool),
        "AGN (absorber at z)": redshifted,
        "LMXB, NS, HMXB": ~redshifted,
        "net counts < 100": net < 100,
        "net counts >= 100": net >= 100,
        "Sherpa's N_H above its floor": fit_nh > nh_min_1e22 * 1.001,
    }
    out: dict[str, Any] = {}
    for name, sel in groups.items():
        keep = sel & ok
        if keep.any():
            out[name] = {
                "sherpa": recovery(truth_nh[keep], fit_nh[keep], truth_gamma[keep],
                                   fit_gamma[keep], nh_min_1e22),
                "latents_gb": recovery(truth_nh[keep], lat["nh_1e22"][keep], truth_gamma[keep],
                                       lat["gamma"][keep], nh_min_1e22),
            }  # fmt: skip
    return out


def run(args: argparse.Namespace, ui: ModuleType, pha_dir: Path) -> dict[str, Any]:
    """Simulate the test sky, fit it with Sherpa, predict it from latents; print the table."""
    import torch

    from xlatent.physics.simulator import simulate

    torch.set_num_threads(args.threads)
    responses = real_responses(args.responses, args.obsid)
    n_sim = int(np.ceil(args.n_fit / 0.4)) + 20  # ~half the default sky has a power law
    t0 = time.perf_counter()
    sky = simulate(n_sim, seed=args.seed, responses=responses, real_fraction=1.0,
                   write_pha=pha_dir)  # fmt: skip
    test = sky[power_law_rows(sky)[: args.n_fit]]
    meta, response_ids = test.meta, sorted(set(test.meta["response_id"]))
    print(f"test sky: {len(test)} of {n_sim} with a power law, {response_ids} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    t0 = time.perf_counter()
    restarts = tuple(args.nh_restarts)
    fits = [fit_pha(ui, pha_dir / f"{sid}.pha", nh_min_1e22=args.nh_min,
                    nh_restarts_1e22=restarts) for sid in meta["spec_id"]]  # fmt: skip
    print(f"Sherpa: {len(fits)} fits in {time.perf_counter() - t0:.0f} s")
    model, model_text = latent_model(args)
    print(f"model: {model_text}")
    train = simulate(args.train_n, seed=args.train_seed)
    train = train[power_law_rows(train)]
    lat = latents_side(model, train, test, args.train_seed)

    ok, fit_nh = np.array([f.ok for f in fits]), np.array([f.nh_1e22 for f in fits])
    fit_s, load_s = np.array([f.fit_s for f in fits]), np.array([f.load_s for f in fits])
    result: dict[str, Any] = {
        "n_fit": len(test), "n_failed": int((~ok).sum()), "model": model_text,
        "responses": response_ids, "seed": args.seed, "nh_min_1e22": args.nh_min,
        "frac_at_nh_floor": float(np.mean(fit_nh[ok] <= args.nh_min * 1.001)),
        "sherpa_fit_s_mean": float(fit_s.mean()), "sherpa_fit_s_median": float(np.median(fit_s)),
        "sherpa_load_s_mean": float(load_s.mean()),
        "latent_per_spectrum_s": lat["per_spectrum_s"], "latent_timed_n": lat["n_timed"],
        "latent_encode_share": lat["encode_share"],
        "regressor_train_n": len(train), "threads": args.threads,
        "failures": sorted({f.message for f in fits if not f.ok})[:10],
        "nh_restarts_1e22": list(restarts),
        "n_improved_by_restart": int(sum(f.improved_by_restart for f in fits)),
        "groups": compare(meta, fits, lat, args.nh_min),
    }  # fmt: skip
    print(f"\n{len(test)} spectra; {result['n_failed']} failed fits, left out of both rows")
    print(f"  {'':<29} {'|dlogNH|':>8} {'>1 dex':>8} {'|dGamma|':>8}   time per spectrum")
    for name, pair in result["groups"].items():
        t_fit = t_lat = ""
        if name == "all":
            t_fit = (f"{1e3 * fit_s.mean():.0f} ms fit (median {1e3 * np.median(fit_s):.0f}; "
                     f"+{1e3 * load_s.mean():.0f} ms load_pha)")  # fmt: skip
            rate = 1 / lat["per_spectrum_s"]
            t_lat = f"{1e6 * lat['per_spectrum_s']:.0f} us encode + predict ({rate:,.0f}/s)"
        print(f" {name} (n = {pair['sherpa']['n']}):")
        print(_row("Sherpa xabs*powlaw, W-stat", pair["sherpa"], t_fit))
        print(_row("latents + gradient boosting", pair["latents_gb"], t_lat))
    floor = 100 * result["frac_at_nh_floor"]
    print(f"Sherpa fits at the N_H floor ({args.nh_min:g}e22 cm^-2): {floor:.0f}%")
    if restarts:
        print(f"restarts from N_H {restarts} lowered W-stat by > 0.5 in "
              f"{result['n_improved_by_restart']} fits")  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ui = sherpa_ui()
    if ui is None:
        print(SKIP_MESSAGE)
        return 0
    from threadpoolctl import threadpool_limits

    from xlatent.core.atomic import atomic_path

    with threadpool_limits(limits=args.threads), tempfile.TemporaryDirectory() as tmp:
        result = run(args, ui, Path(args.pha_dir or tmp))
    if args.out:
        with atomic_path(args.out) as tmp_path:
            Path(tmp_path).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
