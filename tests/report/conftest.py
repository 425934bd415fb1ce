"""Load the synthetic-input builders of tests/analysis (import mode is importlib: no sys.path)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "analysis" / "synth.py"
_spec = importlib.util.spec_from_file_location("xlatent_test_synth", _path)
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)
