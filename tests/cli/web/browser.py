"""Debian's Chromium driven by Playwright for Python (``playwright install`` is not used).

``CROSSENT_CHROMIUM`` names another Chromium binary; the default is the Debian package's
``/usr/bin/chromium`` (``bash .ci/run`` installs it with apt-get when it is missing).
"""

import os
from pathlib import Path

CHROMIUM = Path(os.environ.get("CROSSENT_CHROMIUM", "/usr/bin/chromium"))
# Flags that let Chromium run as root in a container without a GPU, a sandbox or a network.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing():
    """Why no browser can run here (a sentence), or ``None`` when one can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]' installs it)"
    if not CHROMIUM.exists():
        return (
            f"no Chromium at {CHROMIUM}: apt-get install chromium (bash .ci/run does), or set "
            "CROSSENT_CHROMIUM to a Chromium binary"
        )
    return None


def launch(playwright):
    """Start the browser (headless)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)


class Console:
    """A page's console errors, uncaught exceptions and requested URLs, as they happen."""

    def __init__(self, page):
        self.errors = []
        self.requests = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("request", lambda r: self.requests.append(r.url))
