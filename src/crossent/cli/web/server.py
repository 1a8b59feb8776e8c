"""Serve the calculator page on 127.0.0.1 with the standard library's HTTP server.

Only ``/`` and ``/calc.html`` answer (the page); anything else is a 404. The server binds the
loopback interface, so the page is reachable from this machine only.
"""

from __future__ import annotations

import webbrowser
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crossent.cli.web.page import PAGE_NAME, page_html

HOST = "127.0.0.1"


class _PageHandler(BaseHTTPRequestHandler):
    """Answers GET and HEAD of the page; quiet (no line per request)."""

    body = b""

    def _answer(self, with_body: bool) -> None:
        if self.path.split("?")[0] not in ("/", f"/{PAGE_NAME}"):
            self.send_error(HTTPStatus.NOT_FOUND, "only / is served")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(self.body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's method name)
        """Send the page."""
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        """Send the page's headers."""
        self._answer(False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Log nothing (the command prints its address once)."""


def make_server(port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server of the page bound to ``127.0.0.1:port`` (0: any free port), not started.

    Args:
        port: TCP port, 0 to 65535.

    Returns:
        The server; ``server.server_address[1]`` is its port. Run it with ``serve_forever()``.

    Raises:
        OSError: the port is taken or not allowed.
    """
    handler = type("PageHandler", (_PageHandler,), {"body": page_html().encode("utf-8")})
    return ThreadingHTTPServer((HOST, port), handler)


def url_of(server: ThreadingHTTPServer) -> str:
    """``http://127.0.0.1:PORT/``."""
    return f"http://{HOST}:{server.server_address[1]}/"


def serve(port: int, open_browser: bool, announce: Callable[[str], object] = print) -> None:
    """Serve the page until interrupted (Ctrl+C); optionally open it in the default browser.

    Args:
        port: TCP port (0: any free port).
        open_browser: open the page with :mod:`webbrowser` once the server listens.
        announce: called with one line naming the address.
    """
    with make_server(port) as server:
        url = url_of(server)
        announce(f"crossent loss calculator at {url} (Ctrl+C to stop)")
        if open_browser:
            webbrowser.open(url)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
