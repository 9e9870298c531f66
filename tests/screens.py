"""A real screenshot with known text, for the image tests: ``tests/data/screenshot/order.png`` is Chromium's
headless screenshot (``chromium --headless --screenshot --window-size=840,500 order.html``) of the order
confirmation page beside it, and ``order.txt`` is the text shown on it, line by line."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent / "data" / "screenshot"
SCREENSHOT = FOLDER / "order.png"
SCREENSHOT_TEXT = (FOLDER / "order.txt").read_text(encoding="utf-8")
