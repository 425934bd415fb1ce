"""Core containers: the energy grid, SpectrumSet, CSC bands, errors and atomic writes."""

from xlatent.core.atomic import atomic_path, atomic_write_text
from xlatent.core.bands import CSC_BANDS_KEV, band_sums, hardness_columns, hardness_ratio
from xlatent.core.errors import InputError, SchemaError, XlatentError
from xlatent.core.grid import EnergyGrid, bin_average, overlap_matrix, regrid_counts
from xlatent.core.hdf5_write import SpectrumSetWriter
from xlatent.core.spectrumset import SCHEMA_VERSION, SpectrumSet
from xlatent.core.spectrumset_view import SpectrumSetView

__all__ = [
    "CSC_BANDS_KEV",
    "SCHEMA_VERSION",
    "EnergyGrid",
    "InputError",
    "SchemaError",
    "SpectrumSet",
    "SpectrumSetView",
    "SpectrumSetWriter",
    "XlatentError",
    "atomic_path",
    "atomic_write_text",
    "band_sums",
    "bin_average",
    "hardness_columns",
    "hardness_ratio",
    "overlap_matrix",
    "regrid_counts",
]
