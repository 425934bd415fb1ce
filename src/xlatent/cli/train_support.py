"""What ``xlatent train`` does besides fitting: ``--option KEY=VALUE`` (any autoencoder option,
checked as the Python API checks it), ``--ood-reference`` and the lines it reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from xlatent.clitools import fail, usage_error

#: Options with their own flag (or none that makes sense to set from ``--option``).
_OWN_FLAG = {"latent_dim": "--latent-dim", "epochs": "--epochs", "seed": "--seed",
             "loss": "--loss"}  # fmt: skip


def parse_options(items: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` items as autoencoder keywords, each value checked as the Python
    API checks it (a usage error naming the item otherwise)."""
    from xlatent.model.options import ARCH_OPTIONS, TRAIN_OPTIONS

    known = {**ARCH_OPTIONS, **TRAIN_OPTIONS}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            usage_error("--option", f"{item!r}: give KEY=VALUE")
        if key in _OWN_FLAG:
            usage_error("--option", f"{key}: use {_OWN_FLAG[key]}")
        if key not in known:
            usage_error("--option", f"{key}: no such option; known: {', '.join(sorted(known))}")
        opt = known[key]
        try:
            if opt.kind == "bool":
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"{key} must be true or false, not {text!r}")
                value: Any = text.lower() in ("true", "1")
            else:
                value = {"int": int, "float": float}.get(opt.kind, str)(text)
            out[key] = opt.check(key, value)
        except ValueError as exc:
            if not str(exc).startswith(key):  # int("x") and the like
                exc = ValueError(f"{key} must be {opt.describe()}, not {text!r}")
            usage_error("--option", str(exc))
    return out


def refit_ood(fitted: Any, reference: Path, out: Path) -> None:
    """``--ood-reference``: refit the OOD threshold on ``reference`` and save the model again."""
    from xlatent.core import SpectrumSet

    if getattr(fitted, "calibration_", None) is None:
        fail(f"--ood-reference: too few validation spectra for a calibration; wrote {out} "
             "without one")  # fmt: skip
    fitted.calibrate_ood(SpectrumSet.read(reference), reference.name)
    fitted.save(out)


def say_deviance(model: str, fitted: Any, s: Any) -> None:
    """Print the fitted model's mean Poisson deviance on its training spectra ``s``."""
    dev = fitted.deviance(s)
    typer.echo(
        f"{model}: fitted on {len(s)} spectra, mean Poisson deviance {dev.mean():.4g} "
        f"({dev.mean() / s.grid.n_bins:.4g} per bin)"
    )


def say_calibration(fitted: Any) -> None:
    """Print the latent-error scale and OOD threshold the fit calibrated (if it did)."""
    cal = getattr(fitted, "calibration_", None)
    if cal is not None:
        typer.echo(
            f"calibration ({cal.n_validation} validation spectra): latent error scale "
            f"{cal.error_scale:.3f}, OOD threshold {cal.threshold:.3f} (flags 1% of "
            f"{cal.n_reference or cal.n_validation} reference spectra)"
        )
