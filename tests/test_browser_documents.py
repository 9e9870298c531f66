"""Real-browser passes over documents: the table and its preview, a library's filter and bulk delete, sources
that open at their page, and HTML in documents that runs nothing."""

from __future__ import annotations

import re

import pytest
from browsing import open_app, upload, wait_until
from conftest import TESTDATA, launch, make_settings, stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_rag_sources_open_and_table_preview_in_the_browser(tmp_path, tiny_model, embedder, browser):
    app = launch(make_settings(tmp_path / "data", tiny_model, n_ctx=2048, max_tokens=8, retrieval_top_k=3),
                 embedder)
    try:
        page = open_app(browser, app.url, height=1100)
        upload(page, TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf", "pdfjs_tracemonkey.pdf: 14 pages, ")

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
        page.get_by_text("◐ Partly supported").wait_for(timeout=180_000)
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

        box.fill("Which Normandy lord owned the lighthouse?")  # the document never names Normandy
        box.press("Enter")
        page.get_by_text("⚠ Not found in the selected documents").wait_for(timeout=180_000)
        page.get_by_text("Closest passage:").first.wait_for(timeout=30_000)
        fold = page.get_by_text("The model's answer, which the documents do not support")
        fold.first.click()  # the answer is kept, folded under the verdict
        sid = app.services.sessions.list("local")[0].session_id
        answer = app.services.sessions.get("local", sid).messages[-1]
        assert answer["grounding"] == "not_found" and answer["content"].strip()
        page.get_by_text(answer["content"].strip()[:40]).first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "not-found.png"), full_page=True)
    finally:
        stop(app)


def test_a_library_uploads_as_a_zip_filters_and_deletes_in_bulk(tmp_path, tiny_model, embedder, browser):
    import zipfile

    fruits = ["apple", "pear", "plum"]
    archive = tmp_path / "library.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(30):
            fruit = fruits[i % 3]
            z.writestr(f"notes/{fruit}-{i:02d}.md", f"# Note {i}\n\nThis note {i} is about the {fruit} harvest.\n")
        z.writestr("notes/slides.pptx", b"PK not a document")
    app = launch(make_settings(tmp_path / "data", tiny_model, n_ctx=2048, max_tokens=8), embedder)
    try:
        page = open_app(browser, app.url, height=1400)
        upload(page, archive, "30 uploaded, 1 not uploaded", timeout_ms=300_000)
        assert page.get_by_text(re.compile(r"library\.zip › notes/slides\.pptx was skipped")).first.is_visible()
        assert len(app.services.documents.list("local")) == 30

        page.get_by_placeholder("Filter documents by name").fill("apple")
        page.get_by_text("Use in chat (10 of 30 shown)").wait_for(timeout=30_000)
        wait_until(lambda: page.get_by_role("gridcell", name=re.compile(r"^(pear|plum)-")).count() == 0
                   and page.get_by_role("gridcell", name=re.compile(r"^apple-")).count() == 10,
                   "the table to show the 10 apple notes only", 30)
        page.get_by_role("gridcell", name="apple-09.md").click()  # a row opens its preview, found by its ID cell
        page.get_by_text("This note 9 is about the apple harvest.").first.wait_for(timeout=30_000)

        page.get_by_title("Select/Deselect All").first.check()  # Gradio's own select-all: the 10 shown
        page.get_by_role("button", name="Delete", exact=True).click()
        page.get_by_text(re.compile(r"^Deleted apple-")).wait_for(timeout=60_000)
        left = app.services.documents.list("local")
        assert len(left) == 20 and not any(d.name.startswith("apple") for d in left)
        page.get_by_placeholder("Filter documents by name").fill("")
        page.get_by_role("button", name="Use in chat", exact=True).wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "library.png"), full_page=True)
    finally:
        stop(app)
