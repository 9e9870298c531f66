"""What the real-browser tests share (their fixtures, ``browser`` and ``close_pages``, are in conftest.py):
Debian Chromium's path and flags, and polling on the app's state instead of sleeping."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]

def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 180.0) -> None:
    """Poll ``check`` every 0.1 s until it holds; on a busy machine this waits on the app's state
    instead of guessing how long the browser needs. Raises AssertionError after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def stopped_line(page):
    """The metrics line of a stopped answer (it ends "· stopped"); the bare word could be in the
    streamed answer itself, shown before the stop was saved."""
    return page.get_by_text(re.compile(r"· stopped$")).last


def open_app(browser, url: str, height: int = 1000):
    """A new page on the app at ``url``, ``height`` pixels tall, once the app has mounted (the chat box shows)."""
    page = browser.new_page(viewport={"width": 1440, "height": height})
    page.goto(url)
    page.get_by_placeholder("Ask about your documents…").wait_for(timeout=60_000)
    return page


def upload(page, path, summary: str, timeout_ms: int = 120_000) -> None:
    """Upload ``path`` in the Documents panel and wait until the upload summary shows ``summary``."""
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.get_by_text(summary).wait_for(timeout=timeout_ms)
