"""The loss calculator as a web page: ``crossent calc --web``.

One self-contained HTML file (no network, works offline) whose math is one JavaScript module,
``losses.mjs``, checked against the library by ``tests/cli/web/golden.json``:

* :func:`page_html` returns the page, :func:`write_page` writes it as ``calc.html``;
* :func:`make_server` and :func:`serve` serve it on ``127.0.0.1`` (``http.server``);
* :mod:`crossent.cli.web.cli` holds the ``--web`` options of ``crossent calc``.
"""

from __future__ import annotations

from crossent.cli.web.page import page_html, write_page
from crossent.cli.web.server import make_server, serve, url_of

__all__ = ["make_server", "page_html", "serve", "url_of", "write_page"]
