"""Real-browser passes over chat: Debian Chromium driven by Playwright uploads, caches, chats, stops, retries
and screenshots (the document-side passes are in ``test_browser_documents.py``)."""

from __future__ import annotations

import base64
import re

import pytest
from browsing import open_app, stopped_line, upload, wait_until
from conftest import TESTDATA, launch, make_settings, stop
from screens import SCREENSHOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_cache_and_chat_in_the_browser(tmp_path, tiny_model, embedder, browser):
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=400), embedder)
    try:
        page = open_app(browser, app.url)
        upload(page, TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf", "sf_pdflatex-4-pages.pdf: 4 pages, ")
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
    from backend.storage.redis_server import EmbeddedRedis

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
        ends = [(m[-1].get("stopped"), m[-1]["metrics"]["queue_place"]) for m in stored]
        assert ends == [(True, 0), (True, 0)], f"both stopped mid-stream, neither had waited: (stopped, place) {ends}"
    finally:
        stop(app)


def test_page_load_never_wipes_a_chat_asked_while_the_panels_load(running_app):
    """The documents, model and cache panels take seconds to fill on a busy machine; a question asked meanwhile
    was wiped from the screen when their page-load event also set the chat (to the empty chat of a new visitor).
    Only the chat's own event sets it, reading just the session, and for a new visitor it leaves the chat alone."""
    import gradio as gr

    demo = running_app.demo
    config = demo.get_config_file()
    chatbot = next(c["id"] for c in config["components"] if c.get("type") == "chatbot")
    on_load = [d for d in config["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    setting_chat = [d for d in on_load if chatbot in d["outputs"]]
    assert len(setting_chat) == 1 and setting_chat[0]["outputs"] == [chatbot], setting_chat
    restore = demo.fns[setting_chat[0]["id"]].fn
    request = gr.Request(username=None)
    assert isinstance(restore(None, request), type(gr.skip()))
    sid = running_app.services.sessions.create("local")
    running_app.services.sessions.append("local", sid, {"role": "user", "content": "Kept?"})
    assert restore(sid, request)[0]["content"] == "Kept?"


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


def test_sign_in_shows_a_user_only_their_panels_and_sign_out_ends_it(tmp_path, tiny_model, embedder, browser):
    from backend.access.auth import Users

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


def test_an_image_attached_in_the_chat_box_shows_in_history_and_its_answer_says_what_it_cost(tmp_path, vision_models,
                                                                                               embedder, browser):
    model = vision_models / "synthetic-vision-tiny.gguf"
    app = launch(make_settings(tmp_path / "data", model, models_dir=vision_models, max_tokens=40), embedder)
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(app.url)
        box = page.get_by_placeholder("Ask about your documents…")
        box.wait_for(timeout=60_000)
        page.locator("input[type=file][accept='image/*']").set_input_files(str(SCREENSHOT))
        page.locator("img[src*='order']").first.wait_for(timeout=30_000)  # the attachment's preview
        box.fill("What does this screenshot show?")
        box.press("Enter")
        metrics = page.get_by_text(re.compile(r"image [0-9,]+ tok, encoded in")).last
        metrics.wait_for(timeout=120_000)
        users = page.locator(".message.user, [data-testid='user']")
        assert users.locator("img").count() == 1, "the image shows with its question"
        assert "What does this screenshot show?" in users.last.inner_text()

        # The same screenshot pasted into a new chat's box (a clipboard holding an image file, as a screenshot
        # tool gives it) is attached like a chosen file, and its KV is reused instead of encoded again.
        page.get_by_role("button", name="+ New chat").click()
        wait_until(lambda: users.count() == 0, "the new chat to open empty", 30)
        paste_image(page, box, SCREENSHOT, "pasted-order.png")
        page.locator("img[src*='pasted-order']").first.wait_for(timeout=30_000)
        box.fill("And what is its order number?")
        box.press("Enter")
        reused = page.get_by_text(re.compile(r"image [0-9,]+ tok, reused")).last
        reused.wait_for(timeout=120_000)
        assert users.locator("img").count() == 1, "the pasted image shows with its question"
        assert "And what is its order number?" in users.last.inner_text()
        shot = tmp_path / "image-chat.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
    finally:
        stop(app)


def paste_image(page, box, path, name: str) -> None:
    """Paste the image at ``path`` into ``box`` as the clipboard of a screenshot tool gives it: a ``paste``
    event whose clipboardData holds one ``image/png`` file called ``name`` (Playwright cannot write the
    system clipboard in headless Chromium)."""
    data = base64.b64encode(path.read_bytes()).decode()
    box.evaluate("""(box, [data, name]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const clip = new DataTransfer();
        clip.items.add(new File([bytes], name, {type: "image/png"}));
        box.focus();
        box.dispatchEvent(new ClipboardEvent("paste", {clipboardData: clip, bubbles: true, cancelable: true}));
    }""", [data, name])
