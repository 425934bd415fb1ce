"""Self-contained HTML report of an evaluation (``render_report(eval_dir, out_html)``)."""

from __future__ import annotations

from xlatent.report.html import SECTIONS, render_report

__all__ = ["SECTIONS", "render_report"]
