"""Take the README's screenshot: the app on the bundled SmolLM2, a real document uploaded, cached and
asked about in headless Chromium, as a user would.

    .venv/bin/python scripts/screenshot.py [--out docs/chat.png]
    .venv/bin/python scripts/screenshot.py --out docs/rag.png --document DOC.txt --n-ctx 2048 \
        --question "..." --question "..."     # a document longer than n_ctx: chunks cached, RAG answers
    .venv/bin/python scripts/screenshot.py --analytics docs/analytics.png   # then the Analytics panel too

Needs Debian's chromium (``scripts/setup.sh --test`` installs it) and the bundled model.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import launch, make_settings, stop  # noqa: E402
from test_browser import CHROMIUM, FLAGS  # noqa: E402

from backend.documents import Embedder  # noqa: E402
from backend.inference import fetch_bundled  # noqa: E402

QUESTIONS = ["Who built the Harbor Lighthouse of Vellmora, and when?", "Who is the keeper of the lighthouse?"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chat.png")
    parser.add_argument("--document", type=Path, default=ROOT / "docs" / "vellmora.md")
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: two about "
                                                            "the lighthouse document)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--analytics", type=Path, help="also open the Analytics panel and screenshot it here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="kvc-shot-"))
    settings = make_settings(tmp / "data", fetch_bundled(ROOT / "models"), n_ctx=args.n_ctx, max_tokens=96,
                             turn_datetime=False, n_threads=None)
    app = launch(settings, Embedder(settings.embedding_model, settings.embed_batch_size))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1440, "height": 1100})
            page.goto(app.url)
            box = page.get_by_placeholder("Ask about your documents…")
            box.wait_for(timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(str(args.document))
            page.get_by_text(re.compile(re.escape(args.document.name) + r": \d+ page")).wait_for(timeout=120_000)
            page.get_by_role("button", name="Cache", exact=True).click()
            page.get_by_text(re.compile(r"(cached in [0-9.]+ s|already cached): |chunks was cached")).wait_for(
                timeout=600_000)
            for i, question in enumerate(args.question or QUESTIONS, 1):
                box.fill(question)
                box.press("Enter")
                page.wait_for_function("n => document.body.innerText.split('reused').length - 1 >= n", arg=i,
                                       timeout=120_000)
            page.wait_for_timeout(500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=False)
            if args.analytics:
                page.get_by_text("Analytics", exact=True).click()
                page.wait_for_function("() => document.querySelectorAll('#plot-ttft svg .mark-symbol.role-mark path')"
                                       ".length > 0", timeout=60_000)
                page.wait_for_timeout(1000)
                page.locator("#analytics-panel").screenshot(path=str(args.analytics))
            browser.close()
    finally:
        stop(app)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
