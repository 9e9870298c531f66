"""Take the README's screenshot: the app on the bundled SmolLM2, a real document uploaded, cached and
asked about in headless Chromium, as a user would.

    .venv/bin/python scripts/screenshot.py [--out docs/chat.png] [--model GGUF]
    .venv/bin/python scripts/screenshot.py --out docs/rag.png --document DOC.txt --n-ctx 2048 \
        --question "..." --question "..."     # a document longer than n_ctx: chunks cached, RAG answers
    .venv/bin/python scripts/screenshot.py --analytics docs/analytics.png   # then the Analytics panel too
    .venv/bin/python scripts/screenshot.py --document ../shared/testdata/pdf/NAME.pdf --question ... \
        --open-citation 2    # then click the 2nd citation on the page and show the page it opens

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

from browsing import CHROMIUM, FLAGS
from conftest import launch, make_settings, stop

from backend.documents import Embedder
from backend.inference import fetch_bundled

QUESTIONS = ["Who built the Harbor Lighthouse of Vellmora, and when?", "Who is the keeper of the lighthouse?"]


def open_citation(page, n: int) -> None:
    """Click the ``n``-th citation on the page (1-based, in page order: each answer's sources, or its
    closest passage) and wait for the source viewer to show it."""
    target = page.get_by_text(re.compile(r"^(\[\d\] |Closest passage:)")).nth(n - 1)
    target.scroll_into_view_if_needed()
    target.click()
    page.locator("#source-viewer").wait_for(state="visible", timeout=120_000)
    page.locator("#source-quote").wait_for(timeout=120_000)
    page.wait_for_timeout(1500)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chat.png")
    parser.add_argument("--document", type=Path, default=ROOT / "docs" / "vellmora.md")
    parser.add_argument("--question", action="append", help="a question to ask (repeatable; default: two about "
                                                            "the lighthouse document)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--model", type=Path, help="the GGUF that answers (default: the bundled SmolLM2)")
    parser.add_argument("--analytics", type=Path, help="also open the Analytics panel and screenshot it here")
    parser.add_argument("--open-citation", type=int, metavar="N", help="then click the N-th citation on the page "
                        "(a source, or a closest passage) and take the screenshot with the source viewer open")
    parser.add_argument("--height", type=int, default=1100, help="screenshot height, pixels")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="kvc-shot-"))
    settings = make_settings(tmp / "data", args.model or fetch_bundled(ROOT / "models"), n_ctx=args.n_ctx, max_tokens=96,
                             n_threads=None)
    app = launch(settings, Embedder(settings.embedding_model, settings.embed_batch_size))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1440, "height": args.height})
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
            if args.open_citation:
                open_citation(page, args.open_citation)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
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
