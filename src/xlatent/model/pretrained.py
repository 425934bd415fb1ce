"""The model that ships with xlatent: where it lies and the one line that names it.

``data/pretrained/`` holds every file of the model directory that ``xlatent train --recipe
default`` writes (``make pretrained`` retrains it and copies it there; see
``docs/model_card.md``). It is read like any model directory, as data.
"""

from __future__ import annotations

from pathlib import Path

from xlatent.model.checkpoint import HEADER_FILE, CheckpointError, read_header

#: Where the package keeps the pretrained model directory.
PRETRAINED_DIR = Path(__file__).resolve().parent / "data" / "pretrained"


def pretrained_dir() -> Path:
    """The shipped model directory (CheckpointError when this installation has none)."""
    if not (PRETRAINED_DIR / HEADER_FILE).is_file():
        raise CheckpointError(
            f"{PRETRAINED_DIR}: no pretrained model in this installation; give a model "
            "directory, or build it with `make pretrained`"
        )
    return PRETRAINED_DIR


def pretrained_summary() -> str:
    """One line naming the shipped model and the recipe that made it."""
    header = read_header(pretrained_dir())
    recipe = header.get("recipe")
    made = (
        f"recipe {recipe['name']!r}: the 'train' split of {recipe['n']} simulated spectra, "
        f"seed {recipe['seed']}; "
        f"`{recipe['command']}`"
        if recipe
        else "no recipe recorded"
    )
    return (
        f"using the pretrained {header['kind']} shipped with xlatent "
        f"{header['xlatent_version']} ({made}; see docs/model_card.md)"
    )
