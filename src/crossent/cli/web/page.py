"""The calculator page as one self-contained HTML document (no network: it works offline).

The page is ``calc.html`` with its scripts inlined: ``app.mjs`` (controls) as an inline module,
and the modules it imports, ``losses.mjs`` (all the math) and ``draw.mjs`` (SVG drawing), as
``data:`` URLs in an import map, so the one file needs nothing else.
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

PAGE_NAME = "calc.html"
# import specifier -> file of this package
_MODULES = {"crossent/losses.mjs": "losses.mjs", "crossent/draw.mjs": "draw.mjs"}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _data_url(source: str) -> str:
    encoded = base64.b64encode(source.encode("utf-8")).decode("ascii")
    return f"data:text/javascript;base64,{encoded}"


def page_html() -> str:
    """The calculator page: HTML with every script inlined.

    Returns:
        The document, about 40 KB.
    """
    imports = {spec: _data_url(_read(name)) for spec, name in _MODULES.items()}
    importmap = json.dumps({"imports": imports})
    app = _read("app.mjs").replace("</script", "<\\/script")
    return _read("calc.html").replace("__IMPORTMAP__", importmap).replace("__APP__", app)


def write_page(folder: str | Path) -> Path:
    """Write the page as ``calc.html`` in ``folder`` (created); open it from disk.

    Args:
        folder: output directory.

    Returns:
        The path of the written file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PAGE_NAME
    path.write_text(page_html(), encoding="utf-8")
    return path
