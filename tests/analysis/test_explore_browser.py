"""The explorer page in a real browser: headless Chromium (the system's, e.g. Debian's
``chromium`` package) driven by Playwright. Skipped, with the reason, where either is missing.

Checks: the page loads from file:// with no console error and no network request, every
point is drawn, hovering previews a spectrum, clicking shows it with the reconstruction,
the colour selector recolours, and a lasso selection downloads exactly the lassoed ids.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xlatent.analysis.explore import explore
from xlatent.model.catalog import latent_catalog

from .synth import OracleModel, make_set, separated_latents

#: Where to look for the browser; XLATENT_CHROMIUM overrides.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Chromium flags: no sandbox (root in containers), no GPU, no background traffic.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def _chromium() -> str | None:
    return os.environ.get("XLATENT_CHROMIUM") or next(
        (p for p in map(shutil.which, BROWSERS) if p), None
    )


def _skip_reason() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never its own browsers)"
    if _chromium() is None:
        return "no Chromium found (apt-get install chromium, or set XLATENT_CHROMIUM)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))

#: Screen positions of the map's points: canvas offset + the glyph view's screen coordinates.
_POINTS_JS = """() => {
  const r = Bokeh.documents[0].get_model_by_name('map');
  for (const root of Object.values(Bokeh.index)) {
    let v; try { v = root.owner.get_one(r); } catch (e) { continue; }
    const rect = v.parent.canvas_view.el.getBoundingClientRect();
    return {sx: Array.from(v.glyph.sx, s => s + rect.left),
            sy: Array.from(v.glyph.sy, s => s + rect.top)};
  }
  return null;
}"""


def _model(page: Any, name: str, expr: str) -> Any:
    return page.evaluate(f"() => {{ const m = Bokeh.documents[0].get_model_by_name('{name}');"
                         f" return {expr}; }}")  # fmt: skip


def _finite(page: Any, column: str) -> int:
    return _model(page, "spectrum", f"m.data.{column}.filter(v => Number.isFinite(v)).length")


@pytest.fixture(scope="module")
def page_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = make_set(300)
    cat = latent_catalog(s, separated_latents(s).filter(like="latent_").to_numpy())
    out = tmp_path_factory.mktemp("explore") / "explore.html"
    return explore(cat, out, s, OracleModel(), projection="pca").path


def test_explorer_in_headless_chromium(page_path: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    remote: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=_chromium(), headless=True, args=FLAGS,
            viewport={"width": 1300, "height": 1000}, accept_downloads=True,
        )  # fmt: skip
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:"))
                    else remote.append(r.url))  # fmt: skip
            page.goto(page_path.as_uri())
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0 && "
                "Object.keys(Bokeh.index).length > 0",
                timeout=60_000,
            )
            _check_page(page, tmp_path)
            if os.environ.get("XLATENT_SCREENSHOT"):  # tools/screenshot_explore.py does it well
                page.screenshot(path=os.environ["XLATENT_SCREENSHOT"])
        finally:
            browser.close()
    assert errors == [] and remote == []


def _clear(v: np.ndarray, start: float, step: int) -> float:
    """The first whole pixel from ``start + 12 step`` on, in the direction of ``step``, at
    least 4 px from every value of ``v``: a lasso edge no point sits on."""
    c = float(np.round(start)) + 12 * step
    while np.abs(v - c).min() <= 4:
        c += step
    return c


def _check_page(page: Any, tmp_path: Path) -> None:
    # Every point is drawn: the glyph view holds a finite screen position for each.
    page.wait_for_function(f"({_POINTS_JS})() !== null")
    pos = page.evaluate(_POINTS_JS)
    sx, sy = np.array(pos["sx"]), np.array(pos["sy"])
    assert _model(page, "points", "m.data.x.length") == sx.size == 300
    assert np.isfinite(sx).all() and np.isfinite(sy).all()
    ids = _model(page, "points", "Array.from(m.data.spec_id)")

    # Hover and click the point farthest from any other, so the hit is unambiguous.
    d = np.hypot(sx[:, None] - sx[None, :], sy[:, None] - sy[None, :]) + np.eye(sx.size) * 1e9
    i = int(np.argmax(d.min(axis=1)))
    page.mouse.move(sx[i], sy[i])
    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('hovered').text !== ''")
    assert _model(page, "hovered", "m.text") == f"hovered: {ids[i]}"
    assert _finite(page, "hov") > 0 and _finite(page, "obs") == 0
    page.mouse.click(sx[i], sy[i])
    page.wait_for_function("() => Bokeh.documents[0].get_model_by_name('points')"
                           ".selected.indices.length > 0")  # fmt: skip
    assert _model(page, "points", "Array.from(m.selected.indices)") == [i]
    assert ids[i] in _model(page, "info", "m.text")
    assert _finite(page, "obs") > 0 and _finite(page, "rec") > 0  # spectrum + reconstruction

    # The selector recolours: c becomes the chosen option's values, the colour bar appears.
    page.select_option("select", "hardness HS")
    page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('points').data.c[0] "
        "=== Bokeh.documents[0].get_model_by_name('values').data.v1[0]"
    )

    # A lasso (the default drag) around a rectangle selects exactly the points inside it
    # (edges drawn at least 4 px from any point: the mouse moves in whole pixels). The
    # colour bar that came with the new colouring narrowed the map: positions anew.
    page.wait_for_timeout(300)
    pos = page.evaluate(_POINTS_JS)
    sx, sy = np.array(pos["sx"]), np.array(pos["sy"])
    j = int(np.argmax((np.hypot(sx[:, None] - sx, sy[:, None] - sy) < 25).sum(1)))  # densest
    x0, x1 = _clear(sx, sx[j], -1), _clear(sx, sx[j], 1)
    y0, y1 = _clear(sy, sy[j], -1), _clear(sy, sy[j], 1)
    inside = set(np.flatnonzero((sx > x0) & (sx < x1) & (sy > y0) & (sy < y1)).tolist())
    assert len(inside) >= 5, (x0, x1, y0, y1)
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.wait_for_function(f"() => Bokeh.documents[0].get_model_by_name('points')"
                           f".selected.indices.join() !== '{i}'")  # fmt: skip
    chosen = set(_model(page, "points", "Array.from(m.selected.indices)"))
    assert chosen == inside
    with page.expect_download() as download:
        page.get_by_text("Download selected ids (CSV)").click()
    saved = tmp_path / "selection.csv"
    download.value.save_as(saved)
    with saved.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["spec_id"] for r in rows} == {ids[k] for k in inside}
    assert set(rows[0]) == {"spec_id", "name", "source_class", "net_counts_b"}
