"""Training recipes: one named, reproducible way to make a model, from the simulated sky up.

``xlatent train --recipe default --out DIR`` simulates the recipe's set (the default sky,
``n`` spectra from ``seed``, as ``xlatent simulate`` and the demo draw it), fits the
autoencoder on its 'train' split with the recipe's fixed options, and records the recipe
(name, command, set, options) in ``model.json`` beside the xlatent version. The pretrained
model that ships in the package (``xlatent.model.pretrained``) is the ``default`` recipe's
output, rebuilt by ``make pretrained`` (``tools/build_pretrained.py``).

Reproducible: the recipe fixes the device (CPU) and torch's thread count (1), so the same
xlatent on the same CPU gives the same weights bit for bit (``tests/test_recipes.py`` checks
it on a small recipe; another CPU type or library build may round differently). Options a
recipe leaves out take the estimator's defaults, so the ``default`` recipe trains what
``xlatent demo`` trains; the full configuration is in ``model.json`` (``config``).

This module sits beside :mod:`xlatent.pipeline` (it simulates, so it is above physics and
model) and imports them only when a recipe runs, so the CLI can list recipes cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xlatent.model import SpectralAutoencoder


@dataclass(frozen=True)
class Recipe:
    """A named training run: ``n`` simulated default-sky spectra from ``seed`` (the 'train'
    split fitted) and the :class:`~xlatent.model.SpectralAutoencoder` keywords in ``options``
    (name, value pairs; the training seed is ``seed`` too)."""

    name: str
    description: str
    n: int
    seed: int
    options: tuple[tuple[str, Any], ...]
    #: Spectra of an independent sky (seed ``seed + OOD_SEED_OFFSET``) the OOD threshold is
    #: refitted on after the fit (0: keep the fit's own reference, validation + training rows).
    n_ood_reference: int = 0

    @property
    def command(self) -> str:
        """The command that runs this recipe."""
        return f"xlatent train --recipe {self.name} --out DIR"

    def model_options(self) -> dict[str, Any]:
        """Keywords for :class:`~xlatent.model.SpectralAutoencoder` (``seed`` included)."""
        return {"seed": self.seed, **dict(self.options)}

    def record(self) -> dict[str, Any]:
        """What ``model.json`` stores under ``recipe``."""
        record = {"name": self.name, "command": self.command, "n": self.n, "seed": self.seed,
                  "options": dict(self.options)}  # fmt: skip
        if self.n_ood_reference:  # no reference sky, no seed of one to record
            record |= {"n_ood_reference": self.n_ood_reference, "ood_reference_seed": self.ood_seed}
        return record

    @property
    def ood_seed(self) -> int:
        """Seed of the independent sky the OOD threshold is refitted on."""
        return self.seed + OOD_SEED_OFFSET


#: Added to a recipe's seed for its OOD reference sky: far from the seeds a user or the
#: model card draws fresh skies from (0-100).
OOD_SEED_OFFSET = 1000


#: Options every recipe fixes so that a CPU run is bit-reproducible.
REPRODUCIBLE = (("device", "cpu"), ("num_threads", 1))

#: The recipes, by name (``xlatent train --help`` lists them).
RECIPES: dict[str, Recipe] = {
    "default": Recipe(
        name="default",
        description="the demo's autoencoder (8-d latents, default options) on the 'train' "
        "split of 20000 default-sky spectra, seed 0; the pretrained model",
        n=20000,
        seed=0,
        options=(("latent_dim", 8), *REPRODUCIBLE),
        n_ood_reference=20000,
    ),
}

#: The ``xlatent train`` options a recipe fixes (refused together with ``--recipe``), by the
#: name of the command's parameter.
FIXED_BY_RECIPE = {
    "set_path": "SET", "model": "--model", "latent_dim": "--latent-dim", "epochs": "--epochs",
    "seed": "--seed", "resume": "--resume", "loss": "--loss", "device": "--device",
    "max_time": "--max-time", "all_rows": "--all-rows",
    "ood_reference": "--ood-reference",  # a recipe names its own reference sky
    "option": "--option",
}  # fmt: skip


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (ValueError naming the known ones otherwise)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def run_recipe(
    recipe: Recipe | str,
    out_dir: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SpectralAutoencoder:
    """Simulate the recipe's set, fit its 'train' split, save the model (with the recipe
    recorded) into ``out_dir``; returns the fitted model. torch's thread count is restored
    afterwards."""
    import torch

    from xlatent.core.split import train_indices
    from xlatent.model import SpectralAutoencoder
    from xlatent.physics.simulator import simulate

    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    model = SpectralAutoencoder(progress=progress, **recipe.model_options())  # checks options
    log(f"recipe {recipe.name!r}: simulate {recipe.n} default-sky spectra (seed {recipe.seed})")
    s = simulate(recipe.n, seed=recipe.seed)
    train = s[train_indices(s.meta)]
    log(f"recipe {recipe.name!r}: fit the autoencoder on the {len(train)} 'train' spectra")
    threads = torch.get_num_threads()
    try:
        model.fit(train)
        if recipe.n_ood_reference:
            refit_ood_on_independent_sky(
                model,
                recipe.n_ood_reference,
                recipe.seed,
                lambda m: log(f"recipe {recipe.name!r}: {m}"),
            )
    finally:
        torch.set_num_threads(threads)
    model.save(out_dir, recipe=recipe.record())
    return model


def refit_ood_on_independent_sky(
    model: Any, n: int, seed: int, log: Callable[[str], None] = print
) -> str | None:
    """Refit ``model``'s OOD standardisers and threshold on ``n`` spectra of an independent
    default sky, seed ``seed + OOD_SEED_OFFSET`` (what a recipe and the demo do after the fit:
    the threshold ``fit`` takes from its validation and training rows, which reconstruct
    slightly better than fresh spectra, flags more than the 1% it is meant to). Returns the
    description kept in its calibration, or None (nothing done) for a model without a
    calibration (too few validation spectra)."""
    if getattr(model, "calibration_", None) is None:
        return None
    from xlatent.physics.simulator import simulate

    ref_seed = seed + OOD_SEED_OFFSET
    description = f"simulate({n}, seed={ref_seed})"
    log(f"refit the OOD threshold on an independent sky: {description}")
    model.calibrate_ood(simulate(n, seed=ref_seed), description)
    return description


__all__ = [
    "FIXED_BY_RECIPE",
    "RECIPES",
    "Recipe",
    "get_recipe",
    "refit_ood_on_independent_sky",
    "run_recipe",
]
