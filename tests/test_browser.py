"""One real-browser pass: Debian Chromium driven by Playwright uploads, caches, chats and screenshots."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TESTDATA, launch, make_settings, stop

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs the Debian chromium package")
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def close_pages(request):
    """Close each test's pages after it: pages left open keep polling and rendering, which starved the
    browser on a loaded machine."""
    yield
    if "browser" in request.fixturenames:
        for context in request.getfixturevalue("browser").contexts:
            context.close()


def test_upload_cache_and_chat_in_the_browser(tmp_path, tiny_model, embedder, browser):
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=400), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(app.url)
        page.get_by_placeholder("Ask about your documents…").wait_for(timeout=60_000)  # the app has mounted
        page.locator("input[type=file]").first.set_input_files(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf"))
        page.get_by_text("sf_pdflatex-4-pages.pdf: 4 pages, ").wait_for(timeout=120_000)
        checkbox = page.get_by_label("sf_pdflatex-4-pages.pdf")
        assert checkbox.is_checked(), "a fresh upload is selected for chat"
        page.get_by_role("button", name="Cache", exact=True).click()
        # ticking the fresh upload already started prefetching it, so Cache may find it done
        page.get_by_text(re.compile(r"(cached in [0-9.]+ s|already cached): ")).wait_for(timeout=180_000)

        # record every distinct length the answer takes while it streams
        page.evaluate("""() => {
            window.__lengths = new Set();
            new MutationObserver(() => {
                const bots = document.querySelectorAll('.message.bot, [data-testid="bot"]');
                if (bots.length) window.__lengths.add(bots[bots.length - 1].innerText.length);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        box = page.get_by_placeholder("Ask about your documents…")
        box.fill("What is this document about?")
        box.press("Enter")
        metrics = page.get_by_text("reused").last
        metrics.wait_for(timeout=180_000)
        text = metrics.inner_text()
        assert text.startswith("cag") and "TTFT" in text
        lengths = page.evaluate("() => window.__lengths.size")
        assert lengths >= 3, f"the answer should arrive in pieces, saw {lengths} distinct lengths"
        shot = tmp_path / "chat.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
    finally:
        stop(app)


def test_rag_sources_open_and_table_preview_in_the_browser(tmp_path, tiny_model, embedder, browser):
    app = launch(make_settings(tmp_path / "data", tiny_model, n_ctx=2048, max_tokens=8, retrieval_top_k=3),
                 embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(app.url)
        page.get_by_placeholder("Ask about your documents…").wait_for(timeout=60_000)  # the app has mounted
        page.locator("input[type=file]").first.set_input_files(str(TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf"))
        page.get_by_text("pdfjs_tracemonkey.pdf: 14 pages, ").wait_for(timeout=120_000)

        # the table lists the document with its type and upload time; a click previews its text
        page.get_by_role("gridcell", name="pdfjs_tracemonkey.pdf").first.click()
        page.get_by_text("page 1", exact=True).first.wait_for(timeout=30_000)
        assert page.get_by_text("Trace-based Just-in-Time").first.is_visible()

        box = page.get_by_placeholder("Ask about your documents…")
        box.fill("How are loops compiled into trace trees?")
        box.press("Enter")
        page.get_by_text("reused").last.wait_for(timeout=180_000)
        read = page.get_by_text("Read 1 retrieved chunk", exact=True)  # the best chunk was the prefix
        read.first.wait_for(timeout=60_000)
        assert page.get_by_text("rag · ").last.inner_text().count("1 chunk") == 1
        read.first.click()  # opening it shows the chunk the answer read, under its document and page
        opened = page.locator(".message.bot, [data-testid='bot']").filter(has_text="Read 1 retrieved chunk").first
        wait_until(lambda: "pdfjs_tracemonkey.pdf, p. " in opened.inner_text()
                   and len(opened.inner_text()) > 200, "the chunk's text to show")
        page.screenshot(path=str(tmp_path / "rag.png"), full_page=True)
    finally:
        stop(app)


def test_two_sessions_switch_and_stop_in_the_browser(tmp_path, tiny_model, embedder, browser):
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=16000), embedder)  # seconds of streaming
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(app.url)
        box = page.get_by_placeholder("Ask about your documents…")
        box.wait_for(timeout=60_000)
        stop_btn = page.locator("button.stop-button")  # the message box's; enabled only while an answer runs

        def ask_and_stop(question: str) -> None:
            """Ask, and stop the long answer at once (the tiny model streams thousands of tokens a second)."""
            box.fill(question)
            box.press("Enter")
            stop_btn.click(timeout=30_000)
            stopped_line(page).wait_for(timeout=30_000)

        ask_and_stop("First chat question")
        page.get_by_role("button", name="+ New chat").click()
        wait_until(lambda: page.locator(".message.user, [data-testid='user']").count() == 0, "a new chat to start empty")
        ask_and_stop("Second chat question")

        chats = page.locator("#chat-list")
        chats.get_by_text("Second chat question").wait_for(timeout=30_000)
        chats.get_by_text("First chat question").click()  # back to the first chat: its history returns
        page.locator(".message.user, [data-testid='user']").filter(has_text="First chat question").first.wait_for(
            timeout=30_000)
        assert page.locator(".message.user, [data-testid='user']").filter(has_text="Second chat question").count() == 0

        owner_sessions = app.services.sessions.list("local")
        assert [s.title for s in owner_sessions] == ["Second chat question", "First chat question"]
        for s in owner_sessions:
            messages = app.services.sessions.get("local", s.session_id).messages
            assert messages[-1]["role"] == "assistant" and messages[-1].get("stopped") is True, "saved, marked stopped"
        shot = tmp_path / "sessions.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
    finally:
        stop(app)


def test_a_redis_outage_mid_answer_says_so_and_puts_the_question_back_in_the_box(tmp_path, tiny_model, embedder,
                                                                                  browser):
    from backend.redis_server import EmbeddedRedis

    external = EmbeddedRedis(tmp_path / "external-redis")  # REDIS_URL: a server the app does not restart
    external.start()
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=3000, redis_url=external.url), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(app.url)
        box = page.get_by_placeholder("Ask about your documents…")
        box.wait_for(timeout=60_000)
        question = "Will this question survive the outage?"
        box.fill(question)
        box.press("Enter")
        page.locator("button.stop-button").wait_for(state="visible", timeout=30_000)  # the answer is running
        wait_until(lambda: box.input_value() == "", "the box to clear as the answer starts")
        external.stop()  # Redis goes away before the answer can be saved
        page.get_by_text("The session store (Redis) is not reachable").first.wait_for(timeout=60_000)
        wait_until(lambda: box.input_value() == question, "the question to come back to the box", 30)
        external.start()  # back: sending it again works, and it is saved
        box.press("Enter")
        wait_until(lambda: len(app.services.sessions.list("local")) == 1
                   and len(app.services.sessions.get("local", app.services.sessions.list("local")[0].session_id)
                           .messages) == 2, "the resent question to be answered and saved", 60)
    finally:
        stop(app)
        external.stop()


def test_two_tabs_stream_at_the_same_time(tmp_path, tiny_model, embedder, browser):
    # ignore_eos: the random-weight model sometimes ends an answer by itself before its Stop is clicked
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=16000, n_seq_max=2, ignore_eos=True),
                 embedder)
    try:
        tabs = []
        for _ in range(2):  # two browsers' worth of storage: each tab has its own chat
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.goto(app.url)
            page.get_by_placeholder("Ask about your documents…").wait_for(timeout=60_000)
            tabs.append(page)
        for n, page in enumerate(tabs, 1):
            box = page.get_by_placeholder("Ask about your documents…")
            box.fill(f"Chat question {n}")  # greedy: the tiny model's answers to these run past 1000 tokens
            box.press("Enter")

        def answers() -> list[int]:  # characters of each tab's answer so far
            return [len(page.locator(".message.bot, [data-testid='bot']").last.inner_text()) if
                    page.locator(".message.bot, [data-testid='bot']").count() else 0 for page in tabs]

        wait_until(lambda: app.services.chat.scheduler.active == 2, "both answers to hold a sequence at once", 60)
        wait_until(lambda: min(answers()) > 0, "both tabs to show text", 60)
        shown = answers()

        def both_growing() -> bool:
            now, side_by_side = answers(), app.services.chat.scheduler.active == 2
            return side_by_side and all(b > a for a, b in zip(shown, now))

        wait_until(both_growing, "both tabs' answers to grow while both hold a sequence", 60)
        for page in tabs:
            page.locator("button.stop-button").click(timeout=30_000)
            stopped_line(page).wait_for(timeout=30_000)
        stored = [app.services.sessions.get("local", s.session_id).messages for s in app.services.sessions.list("local")]
        assert len(stored) == 2 and all(m[-1].get("stopped") and m[-1]["metrics"]["queue_place"] == 0
                                        for m in stored), "both stopped mid-stream, neither had waited"
    finally:
        stop(app)


def test_retry_and_undo_rewrite_the_saved_session(tmp_path, tiny_model, embedder, browser):
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=20), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(app.url)
        box = page.get_by_placeholder("Ask about your documents…")
        box.wait_for(timeout=60_000)
        metrics = page.get_by_text("reused")

        def messages() -> list[dict]:
            sessions = app.services.sessions.list("local")
            return app.services.sessions.get("local", sessions[0].session_id).messages if sessions else []

        def saved() -> list[str]:
            return [m["content"] for m in messages()]

        for n, question in enumerate(("First?", "Second?"), 1):
            box.fill(question)
            box.press("Enter")
            wait_until(lambda n=n: len(messages()) == 2 * n, f"answer {n} to be saved")
            metrics.nth(n - 1).wait_for(timeout=180_000)  # and shown
        before, answered_at = saved(), messages()[3]["created_at"]
        page.get_by_label("Retry").last.click()  # the last question is answered again, not appended
        def replaced() -> bool:  # one read: retry drops the old answer before it saves the new one
            now = messages()
            return len(now) == 4 and now[3]["created_at"] != answered_at

        wait_until(replaced, "the retried answer to replace the last one")
        metrics.nth(1).wait_for(timeout=180_000)
        after = saved()
        assert len(after) == 4 and after[:3] == before[:3], "retry replaces the last answer"
        page.get_by_label("Undo").last.click()  # the last question goes back into the box
        page.wait_for_function(
            "() => document.querySelector('textarea[placeholder^=\"Ask about\"]').value === 'Second?'", timeout=30_000)
        assert saved() == before[:2]
    finally:
        stop(app)


def test_analytics_panel_plots_the_answers(tmp_path, tiny_model, embedder, browser):
    from gradio_client import handle_file

    app = launch(make_settings(tmp_path / "data", tiny_model), embedder)
    try:
        client = app.client
        doc = client.predict(handle_file(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")), "", True,
                             api_name="/upload_document")
        sid = client.predict(api_name="/create_session")
        for question, mode in (("What is it about?", "cag"), ("And the title?", "cag"), ("Any tables?", "rag")):
            list(client.submit(sid, question, [doc["doc_id"]], mode, api_name="/chat"))
        page = browser.new_page(viewport={"width": 1440, "height": 1400})
        page.goto(app.url)
        page.get_by_placeholder("Ask about your documents…").wait_for(timeout=60_000)
        page.get_by_text("Analytics", exact=True).click()
        page.get_by_text(re.compile(r"3 answers")).wait_for(timeout=60_000)
        totals = page.locator("#analytics-totals").inner_text()
        assert "cache hit rate" in totals and "median TTFT" in totals, totals

        def marks(plot: str, mark: str) -> int:
            return page.locator(f"#{plot} svg .mark-{mark}.role-mark path").count()  # not the legend's

        wait_until(lambda: marks("plot-ttft", "symbol") >= 3, "a TTFT point per answer", 60)
        wait_until(lambda: marks("plot-tokens", "rect") >= 3, "token bars", 60)
        wait_until(lambda: marks("plot-decode", "line") >= 1, "the decode-speed line", 60)
        wait_until(lambda: marks("plot-retrieval", "symbol") >= 1, "a retrieval-time point for the RAG answer", 60)
        assert marks("plot-ttft", "symbol") == 3 and marks("plot-retrieval", "symbol") == 1
        page.close()
    finally:
        stop(app)


XSS = """# Notes <img src=x onerror="window.__xss = 'img'">

The payload <script>window.__xss = 'script'</script> sits in this paragraph about lighthouses.
A link <a href="javascript:window.__xss='link'">click</a> and <svg onload="window.__xss='svg'"></svg> too.
"""


def test_html_and_script_in_a_document_name_text_sources_and_question_run_nothing(tmp_path, tiny_model, embedder,
                                                                                  browser):
    doc = tmp_path / "<img src=x onerror=window.__xss=1>.md"
    doc.write_text(XSS, encoding="utf-8")
    app = launch(make_settings(tmp_path / "data", tiny_model, n_ctx=2048, max_tokens=8), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(app.url)
        box = page.get_by_placeholder("Ask about your documents…")
        box.wait_for(timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(str(doc))
        # Gradio's upload drops < and > from file names; the rest of the name shows as text
        page.get_by_text(re.compile(r"onerror=window.__xss=1.md: 1 page")).wait_for(timeout=120_000)
        page.get_by_role("gridcell", name=re.compile("onerror")).first.click()  # the preview renders the text
        page.get_by_text("sits in this paragraph").first.wait_for(timeout=30_000)
        box.fill('What sits here? <img src=x onerror="window.__xss=\'question\'"><script>window.__xss=3</script>')
        box.press("Enter")
        page.get_by_text("reused").last.wait_for(timeout=180_000)
        page.get_by_role("radio", name="Retrieval (RAG)").check()
        box.fill("Which paragraph is about lighthouses?")
        box.press("Enter")
        read = page.get_by_text("Read 1 retrieved chunk", exact=True).first  # the chunk, under the document's name
        read.wait_for(timeout=180_000)
        read.click()  # open the chunk
        page.get_by_text(re.compile(r"img src=x onerror=window.__xss=1.md, p\. 1")).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)
        assert page.evaluate("() => window.__xss") is None and not dialogs
        live = page.evaluate("""() => ({
            handlers: [...document.querySelectorAll('*')].filter(e => [...e.attributes].some(
                a => a.name.startsWith('on') && a.value.includes('__xss'))).length,
            scripts: [...document.scripts].filter(s => s.text.includes('__xss')).length,
            links: document.querySelectorAll('a[href^="javascript:"]').length})""")
        assert live == {"handlers": 0, "scripts": 0, "links": 0}, live  # sanitised, not just lucky timing
    finally:
        stop(app)


def test_sign_in_shows_a_user_only_their_panels_and_sign_out_ends_it(tmp_path, tiny_model, embedder, browser):
    from backend.auth import Users

    users = Users(tmp_path / "users.json")
    users.add("alice", "alice-secret-1")
    users.add("root", "root-secret-333", admin=True)
    app = launch(make_settings(tmp_path / "data", tiny_model, users_file=users.path), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})

        def sign_in(name: str, password: str) -> None:
            page.goto(app.url)
            page.get_by_label("username").fill(name)
            page.get_by_label("password").fill(password)
            page.get_by_role("button", name="Login").click()
            page.get_by_text(f"Signed in as {name}").wait_for(timeout=60_000)

        sign_in("alice", "alice-secret-1")
        page.get_by_placeholder("Ask about your documents…").wait_for(timeout=60_000)
        wait_until(lambda: not page.get_by_text("Logs", exact=True).is_visible(), "the Logs panel to hide", 30)
        assert not page.get_by_text("Model", exact=True).is_visible()
        page.get_by_role("link", name="Sign out").or_(page.get_by_role("button", name="Sign out")).first.click()
        page.get_by_label("password").wait_for(timeout=30_000)  # back at the sign-in form
        sign_in("root", "root-secret-333")
        page.get_by_text("Logs", exact=True).wait_for(timeout=30_000)
        assert page.get_by_text("Model", exact=True).is_visible()
    finally:
        stop(app)


def test_a_citation_opens_its_page_image_with_the_quote_marked(tmp_path, smollm2, embedder, browser):
    import io

    import numpy as np
    from chat.test_citations import PAGES
    from pdfgen import write_pdf
    from PIL import Image

    pdf = write_pdf(tmp_path / "vellmora.pdf", PAGES)
    app = launch(make_settings(tmp_path / "data", smollm2, n_ctx=4096, max_tokens=48, n_threads=None), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(app.url)
        box = page.get_by_placeholder("Ask about your documents…")
        box.wait_for(timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(str(pdf))
        page.get_by_text("vellmora.pdf: 3 pages, ").wait_for(timeout=120_000)
        box.fill("Who is the keeper of the lighthouse?")
        box.press("Enter")
        page.get_by_text("✓ Supported by the documents").wait_for(timeout=180_000)
        citation = page.get_by_text("[1] vellmora.pdf, p. 3")
        citation.first.click()
        page.locator("#source-viewer").wait_for(state="visible", timeout=60_000)
        assert page.locator("#source-quote").inner_text() == "The keeper of the lighthouse is named Tobias Brennick."
        assert "vellmora.pdf · p. 3" in page.locator("#source-viewer").inner_text()
        image = page.locator("#source-page img")
        image.wait_for(state="visible", timeout=60_000)
        wait_until(lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), "the page image to load")
        shot = np.asarray(Image.open(io.BytesIO(image.screenshot())).convert("RGB")).astype(int)
        marked = ((shot[..., 0] > 240) & (shot[..., 1] > 200) & (shot[..., 2] < 200)).sum()
        assert marked > 200, "the quote is marked in yellow on the rendered page"
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    finally:
        stop(app)
