"""The README's picture of the calculator page, taken in Chromium.

    python -m tests.cli.web.screenshot [--out docs/img/calc.png]

A confident mistake (the true class at p = 0.18) with cross-entropy, focal, GCE, SGCE, MAE and
poly-1 selected: the plot shows why focal keeps pushing on it while GCE and MAE give up.
"""

import argparse
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from crossent.cli.web import write_page
from tests.cli.web import browser as chromium

OUT = Path(__file__).parents[3] / "docs" / "img" / "calc.png"
SHOWN = ("ce", "focal", "gce", "sgce", "mae", "poly1")
LOGITS = (0.4, 1.9, -0.8)
SIZE = {"width": 1280, "height": 990}


def set_state(page):
    """The README's state: K = 3, logits LOGITS, true class 0, eps = 0.05, SHOWN selected."""
    move = "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    for j, z in enumerate(LOGITS):
        page.eval_on_selector(f"input[aria-label='z{j} slider']", move, str(z))
    page.eval_on_selector("input[aria-label='ε slider']", move, "0.05")
    for box in page.query_selector_all("#losses input[data-loss]"):
        if (box.get_attribute("data-loss") in SHOWN) != box.is_checked():
            box.click()
    page.evaluate("window.scrollTo(0, 0)")


def take(browser, folder, out):
    """Write the page into ``folder``, open it, set the state, save the picture to ``out``."""
    page = browser.new_page(viewport=SIZE)
    console = chromium.Console(page)
    page.goto(write_page(folder).as_uri())
    set_state(page)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=out)
    page.close()
    # 256 colours: the same picture (flat fills, anti-aliased text) in a third of the bytes
    Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)
    if console.errors:
        raise RuntimeError(f"the page logged errors: {console.errors}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    reason = chromium.missing()
    if reason:
        raise SystemExit(reason)
    import tempfile

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        instance = chromium.launch(playwright)
        try:
            path = take(instance, Path(folder), args.out)
        finally:
            instance.close()
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
