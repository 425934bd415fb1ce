"""Screenshot an explorer page with one spectrum clicked (the README's figure).

    PYTHONPATH=src python tools/screenshot_explore.py explore.html docs/figures/explore.png \
        [--id SPEC_ID] [--colour class]

Opens the page in the system's headless Chromium (Playwright; no browser download), sets the
colouring, hovers one point and clicks another (``--id``, default: the shown spectrum with the
most net counts), and writes a PNG of the page.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

_POS_JS = """(i) => {
  const r = Bokeh.documents[0].get_model_by_name('map');
  for (const root of Object.values(Bokeh.index)) {
    let v; try { v = root.owner.get_one(r); } catch (e) { continue; }
    const rect = v.parent.canvas_view.el.getBoundingClientRect();
    return [rect.left + v.glyph.sx[i], rect.top + v.glyph.sy[i]];
  }
  return null;
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--id", default=None, help="spec_id to click (default: most counts)")
    ap.add_argument("--colour", default="class", help="colour selector entry")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        page = ctx.new_page()
        page.goto(args.page.resolve().as_uri(), timeout=300_000)
        page.wait_for_function(f"({_POS_JS})(0) !== null", timeout=300_000)
        page.select_option("select", args.colour)
        page.wait_for_timeout(500)
        data = "Bokeh.documents[0].get_model_by_name('points').data"
        if args.id is None:
            i = page.evaluate(f"() => {{ const c = {data}.counts; let b = 0;"
                              " for (let k = 1; k < c.length; k++) if (c[k] > c[b]) b = k;"
                              " return b; }")  # fmt: skip
        else:
            i = page.evaluate(f"(s) => {data}.spec_id.indexOf(s)", args.id)
            if i < 0:
                raise SystemExit(f"{args.id} is not on the page")
        x, y = page.evaluate(_POS_JS, i)
        page.mouse.click(x, y)
        page.wait_for_timeout(300)
        page.mouse.move(x + 40, y + 25)  # a neighbour's preview, in grey
        page.wait_for_timeout(500)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.png), full_page=True)
        ctx.close()
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
