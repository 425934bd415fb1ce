"""xlatent: compact, physically meaningful latent representations of X-ray spectra.

Three lines from spectra to latents::

    s = xlatent.SpectrumSet.read("set.h5")   # or xlatent.read_spectra("data/"), xlatent.simulate(n)
    model = xlatent.SpectralAutoencoder(latent_dim=8).fit(s)
    z = model.transform(s)                           # (n, 8) latents
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xlatent.core import EnergyGrid, SpectrumSet, SpectrumSetView, SpectrumSetWriter

from xlatent._version import __version__

__all__ = ["EnergyGrid", "SpectrumSet", "SpectrumSetView", "SpectrumSetWriter", "__version__"]

# Everything loads on first use (pandas and h5py for the core, torch for the model, the
# simulator) so that `import xlatent`, and with it `xlatent --help`, stays fast.
_LAZY = {
    "EnergyGrid": "xlatent.core",
    "SpectrumSet": "xlatent.core",
    "SpectrumSetView": "xlatent.core",
    "SpectrumSetWriter": "xlatent.core",
    "SpectralAutoencoder": "xlatent.model",
    "PCABaseline": "xlatent.model",
    "load_model": "xlatent.model",
    "read_spectra": "xlatent.io.ingest",
    "simulate": "xlatent.physics.simulator",
    "evaluate": "xlatent.analysis",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xlatent' has no attribute {name!r}")
