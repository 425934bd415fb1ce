"""The byte-level FITS header reader: card values and headers as astropy reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from xlatent.io import fastfits


@pytest.mark.parametrize(
    "text,value",
    [
        ("'ACIS    '           / instrument", "ACIS"),
        ("'O''Brien''s field'  / a quote doubled", "O'Brien's field"),
        ("''''", "'"),
        ("''", ""),
        ("'a / b'", "a / b"),
        ("42 / comment", 42),
        ("-3.5E+02", -350.0),
        ("1.0D-3", 1e-3),
        ("T", True),
        ("F / flag", False),
        ("", None),
    ],
)
def test_card_values(text: str, value: object) -> None:
    got = fastfits._value(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["'no end", "'ends in a doubled quote''", "'"])
def test_unterminated_strings_are_refused(text: str) -> None:
    with pytest.raises(fastfits.FitsFormatError, match="unterminated"):
        fastfits._value(text)


def test_headers_read_as_astropy_reads_them(real_spectra_dir: Path) -> None:
    path = real_spectra_dir / "acisf00308_000N001_r0044_pha3.fits"
    raw = path.read_bytes()
    ours = list(fastfits.iter_extensions(raw))
    with fits.open(path) as hdul:
        theirs = [h.header for h in hdul[1:]]
    assert len(ours) == len(theirs) > 1
    for mine, ref in zip(ours, theirs, strict=True):
        for key in ("EXTNAME", "NAXIS1", "NAXIS2", "EXPOSURE", "BACKSCAL", "TFORM1", "DATE-OBS"):
            if key in ref:
                expected = ref[key]
                got = mine.header[key]
                if isinstance(expected, float):
                    assert np.isclose(got, expected, rtol=1e-12)
                else:
                    assert got == expected, key
