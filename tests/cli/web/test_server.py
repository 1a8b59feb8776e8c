"""``crossent calc --web``: the page, its server and the command's options (no browser)."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from crossent.cli import main
from crossent.cli.web import make_server, page_html, url_of


def test_page_is_one_file_with_its_modules_inlined():
    page = page_html()
    assert page.startswith("<!DOCTYPE html>") and "__IMPORTMAP__" not in page
    assert 'import * as L from "crossent/losses.mjs"' in page
    importmap = re.search(r'<script type="importmap">(.*?)</script>', page).group(1)
    modules = json.loads(importmap)["imports"]
    assert sorted(modules) == ["crossent/draw.mjs", "crossent/losses.mjs"]
    sources = [base64.b64decode(url.split(",", 1)[1]).decode() for url in modules.values()]
    assert "export function lossAndGradient" in sources[0] + sources[1]
    # nothing from the network: no http(s) URL in a src or href, no fetch, no remote import
    for text in [page, *sources]:
        assert not re.search(r"""(src|href)=["']https?:|from ["']https?:|fetch\(|import\(""", text)


def test_server_answers_the_page_and_nothing_else():
    server = make_server(0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = url_of(server)
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url) as response:
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
            assert response.read().decode() == page_html()
        with urllib.request.urlopen(url + "calc.html") as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "../etc/passwd")
        assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def run(*args):
    return CliRunner().invoke(main, ["calc", *map(str, args)])


def test_out_writes_the_page(tmp_path):
    result = run("--web", "--out", tmp_path / "site")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "calc.html").read_text() == page_html()
    assert "calc.html" in result.output


def test_out_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run("--web", "--out", blocker / "sub")
    assert result.exit_code == 1 and str(blocker / "sub") in result.output
    assert "Traceback" not in result.output


def test_port_taken_is_a_bad_parameter():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--web", "--port", port)
    assert result.exit_code == 2
    assert "--port" in result.output and f"127.0.0.1:{port}" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "8000"], "--port go(es) with --web"),
        (["--out", "x", "--probs", "0.5,0.5", "--label", "0"], "--out go(es) with --web"),
        (["--web", "--probs", "0.5,0.5"], "drop --probs"),
        (["--web", "--json"], "drop --json"),
        (["--web", "--out", "x", "--open"], "drop --port, --open"),
        (["--web", "--port", "70000"], "70000"),
    ],
)
def test_web_options_misused(args, message):
    result = run(*args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_table_still_works_without_web():
    result = run("--probs", "0.7,0.2,0.1", "--label", "0", "--losses", "ce")
    assert result.exit_code == 0 and "0.357" in result.output


def test_command_serves_until_ctrl_c_and_opens_the_browser(tmp_path):
    """``crossent calc --web --port 0 --open`` as a user runs it: the printed address answers
    the page, $BROWSER is called with it, and Ctrl+C (SIGINT) stops it cleanly."""
    opened = tmp_path / "opened"
    recorder = tmp_path / "browser.py"
    recorder.write_text(f"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\n")
    env = {**os.environ, "BROWSER": f"{sys.executable} {recorder} %s"}
    code = "from crossent.cli import main; main()"
    args = [sys.executable, "-c", code, "calc", "--web", "--port", "0", "--open"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            line = process.stdout.readline()
            url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.read().decode() == page_html()
            deadline = time.monotonic() + 10
            while not (opened.exists() and opened.read_text()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert opened.read_text() == url
        finally:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
