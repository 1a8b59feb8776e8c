import os
import threading

import pytest
import torch

from crossent.cli.web import make_server, url_of
from tests.cli.web import browser as chromium


@pytest.fixture(autouse=True)
def _one_thread():
    """Single losses on tiny tensors are fastest on one thread; on shared cores more contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (skipped, with the reason, if there is none;
    under CI=true a missing browser fails instead: .ci/run installs it)."""
    reason = chromium.missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = chromium.launch(playwright)
        yield instance
        instance.close()


@pytest.fixture
def open_page(browser):
    """``open_page(url, width=1280)``: a new page at ``url`` and its :class:`Console` (a test
    asserts it saw no error; teardown checks again)."""
    made = []

    def _open(url, width=1280, height=900):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        console = chromium.Console(page)
        made.append((context, console))
        page.goto(url, wait_until="load")
        return page, console

    yield _open
    for context, console in made:
        context.close()
        assert console.errors == [], console.errors


@pytest.fixture(scope="session")
def calc_url():
    """The calculator page served as ``crossent calc --web`` serves it (any free port)."""
    server = make_server(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url_of(server)
    server.shutdown()
    server.server_close()
