"""Checks every HTML page crossent writes must pass in a real browser."""

from pathlib import Path
from urllib.parse import unquote, urlparse

PHONE = 375  # CSS pixels: a small phone

# Text blocks that must stay within the viewport (tables may scroll inside a .scroll box).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  const blocks = 'h1, h2, h3, p, li, figcaption, img, svg, fieldset, label';
  for (const el of document.querySelectorAll(blocks)) {
    if (el.closest('.scroll')) continue;
    const r = el.getBoundingClientRect();
    if (r.width && (r.right > width + 0.5 || r.left < -0.5)) {
      const where = `${Math.round(r.left)}..${Math.round(r.right)}`;
      out.push(`${el.tagName} ${where}: ${el.textContent.slice(0, 50)}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, out};
}"""


def check_images_tables_links(page):
    """Every image decoded, every table with rows, every link resolving; their counts."""
    images = page.eval_on_selector_all(
        "img", "imgs => imgs.map((i) => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    broken = [src for src, complete, width in images if not (complete and width > 0)]
    assert broken == [], f"images that did not load: {broken}"
    rows = page.eval_on_selector_all("table", "ts => ts.map((t) => t.rows.length)")
    assert rows and min(rows) > 1, f"tables without rows: {rows}"
    links = page.eval_on_selector_all("a[href]", "as => as.map((a) => a.href)")
    for url in links:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            target = Path(unquote(parsed.path))
            assert target.is_file() and target.stat().st_size > 0, f"broken link {url}"
        if parsed.fragment:
            assert page.locator(f"[id='{parsed.fragment}']").count() == 1, f"no anchor {url}"
    return len(images), len(rows), len(links)


def check_phone_width(open_page, url):
    """The page at a phone's width: nothing wider than the screen but scrolling tables."""
    page, console = open_page(url, width=PHONE, height=800)
    layout = page.evaluate(OVERFLOW)
    assert layout["out"] == [], layout["out"]
    assert layout["scrollWidth"] <= layout["width"], layout
    assert console.errors == []
