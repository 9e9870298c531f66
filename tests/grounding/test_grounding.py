"""Citations without a model: passages point into the stored page text of real documents, answers are
matched to the sentences that hold them, abstentions and unnamed entities are not_found, and the viewer
marks a quote on a rendered PDF page (its text layer, or OCR on a scan)."""

from __future__ import annotations

import numpy as np
import pytest
from chat.test_real_answers import FACTS
from conftest import TESTDATA, make_settings
from grounding.test_verdict import FITTED
from pdfgen import write_pdf
from screens import SCREENSHOT_TEXT

from backend.documents import Page, extract
from backend.grounding import (
    PassageIndex,
    SourceViewer,
    attribute,
    is_abstention,
    locate,
    mark_pdf_page,
    passages_of,
    sentence_spans,
)
from backend.grounding.attribution import UNCALIBRATED
from backend.grounding.viewer import context
from backend.services import build_services
from benchmarks.ocr import scan_pdf


def index_of(data: bytes, name: str) -> PassageIndex:
    return PassageIndex.build(passages_of("d1", name, extract(data, name).pages))


@pytest.fixture(scope="module")
def facts() -> PassageIndex:
    return index_of(FACTS.encode(), "vellmora.md")


@pytest.mark.parametrize("name", ["pdf/pdfjs_tracemonkey.pdf", "docx/pandoc_headers.docx", "md_txt/pandoc_MANUAL.md",
                                  "md_txt/chardet_windows-1252__ude_2.txt"])
def test_every_passage_is_the_exact_slice_of_its_page_text(name):
    path = TESTDATA / name
    pages = extract(path.read_bytes(), path.name).pages
    passages = passages_of("d1", path.name, pages)
    assert len(passages) > 3
    for p in passages:
        page = pages[p.part]
        assert page.text[p.start:p.end] == p.text and p.text.strip() == p.text and p.text
        assert p.page == page.number and p.section == page.section
    assert len({p.page for p in passages}) == len({pg.number for pg in pages if pg.text.strip()})


def test_a_form_line_is_its_own_passage_and_wrapped_prose_stays_one_sentence():
    """The OCR'd order screenshot: a line per field, no full stops. Joined, "Shipping to: 22 Larch Street"
    sat in the same passage as "Order number", and "The order number is 22" read as supported."""
    ocr = ("Northwind Outfitters\n\nThank you, your order is confirmed\nOrder number: KX-48213\nEstimated delivery: "
           "Thursday 14 March, between 9:00 and 13:00\nShipping to: 22 Larch Street, Bristol BS1 4DJ\nItems: 2 x Trail "
           "running socks, 1 x Waterproof jacket (size M)\nTotal paid: 86.40 EUR by card ending 4417\nQuestions about "
           "this order? Call 0117 496 0321 and quote your order number.\n\nTrack parcel")  # RapidOCR's, as stored
    for order in (SCREENSHOT_TEXT, ocr):
        spans = [order[a:b] for a, b in sentence_spans(order)]
        assert "Shipping to: 22 Larch Street, Bristol BS1 4DJ" in spans and "Northwind Outfitters" in spans
        assert "Estimated delivery: Thursday 14 March, between 9:00 and 13:00" in spans
        assert "Total paid: 86.40 EUR by card ending 4417" in spans
    index = PassageIndex.build(passages_of("d1", "order.png", [Page(1, ocr, ocr=True)]))
    wrong = attribute("What is the order number?", "The order number is 22", [index], calibration=FITTED)
    right = attribute("What is the order number?", "The order number is KX-48213.", [index], calibration=FITTED)
    assert wrong.grounding == "not_found" and right.grounding == "partial" and right.confidence > 0  # no ✓: verdict.py
    assert right.sources[0].quote.endswith("Order number: KX-48213")
    prose = ("The balls of lead as they fall are found bent and flat-\ntened in every shape. A report creeps into camp that\n"
             "Johnston is coming with fifty thousand men to raise the siege of the\nCity, and we believe it.\n")
    assert [prose[a:b] for a, b in sentence_spans(prose)] == [
        "The balls of lead as they fall are found bent and flat-\ntened in every shape.",
        ("A report creeps into camp that\nJohnston is coming with fifty thousand men to raise the siege of the\nCity, "
         "and we believe it.")]


def test_an_answer_is_cited_by_the_sentence_that_holds_it(facts):
    found = attribute("Who built the Harbor Lighthouse of Vellmora?",
                      "The Harbor Lighthouse of Vellmora was built by the engineer Odile Marchetti.", [facts])
    assert found.grounding == "partial" and not found.abstained
    first = found.sources[0]
    assert first.quote == "The Harbor Lighthouse of Vellmora was built in 1887 by the engineer Odile Marchetti."
    assert first.section == "Harbor Lighthouse of Vellmora" and first.page == 1 and first.end - first.start == len(first.quote)


def test_each_sentence_of_a_long_answer_is_cited_the_one_about_the_question_first(facts):
    answer = "The lamp is green. The keeper of the lighthouse is Tobias Brennick."
    found = attribute("Who is the keeper of the lighthouse?", answer, [facts])
    assert "Tobias Brennick" in found.sources[0].quote and "green" in found.sources[1].quote
    assert found.sources[0].score > found.sources[1].score


def test_an_invented_answer_is_not_found_and_cites_nothing_but_offers_the_closest_passage(facts):
    answer = "It is 112 feet high and painted blue and white."
    found = attribute("How tall is the lighthouse?", answer, [facts], calibration=FITTED)
    assert found.grounding == "not_found" and found.sources == []
    assert found.closest is not None and "47 meters tall" in found.closest.quote
    unjudged = attribute("How tall is the lighthouse?", answer, [facts])  # a model without a calibration: ◐ only
    assert unjudged.grounding == "partial" and unjudged.sources == [] and unjudged.note == UNCALIBRATED
    assert unjudged.closest == found.closest


def test_the_model_saying_the_documents_do_not_say_is_not_found_with_no_citation(facts):
    for answer in ("The document does not mention the price of oil.", "The price of oil is not specified.",
                   "I don't know.", "There is no information about oil prices in the text."):
        assert is_abstention(answer), answer
        found = attribute("What is the price of oil?", answer, [facts])
        assert found.grounding == "not_found" and found.abstained and found.sources == []
    for answer in ("He did not have children.", "The lamp is not red but green.", "No, it was built in 1887."):
        assert not is_abstention(answer), answer


def test_a_question_about_something_the_documents_never_name_is_not_found(facts):
    found = attribute("Who built the Harbor Lighthouse of Normandy?", "Odile Marchetti built it in 1887.", [facts])
    assert found.grounding == "not_found" and "“Normandy”" in found.note
    misspelt = attribute("Who built the lighthouse for Marchety?", "Odile Marchetti built it in 1887.", [facts])
    assert misspelt.grounding != "not_found"  # a misspelt name still counts as named


def test_locate_finds_a_quote_across_line_breaks_hyphens_and_case():
    page = "The VM would try to re-\r\ncord a branch   trace,\r\nand find that"
    start, end = locate(page, "the vm would try to record a branch trace, and")
    assert page[start:end].startswith("The VM") and page[start:end].endswith("and")
    assert locate(page, "entirely different words here") is None
    before, quote, after = context("First para.\n\nSecond one. The quote. Tail.\n\nThird.", 25, 35)
    assert (before, quote, after) == ("Second one. ", "The quote.", " Tail.")


def yellow(image) -> int:
    """Pixels of the viewer's mark colour (yellow over white)."""
    a = np.asarray(image).astype(int)
    return int(((a[..., 0] > 240) & (a[..., 1] > 220) & (a[..., 2] < 200)).sum())


def test_a_pdf_quote_is_marked_on_its_rendered_page(tmp_path):
    path = write_pdf(tmp_path / "v.pdf", [["Page one is about the harbor."],
                                          ["The keeper of the lighthouse is named Tobias Brennick.",
                                           "The lamp is green."]])
    data = path.read_bytes()
    image, marked = mark_pdf_page(data, 2, "The keeper of the lighthouse is named Tobias Brennick.")
    assert marked and yellow(image) > 2000
    plain, marked = mark_pdf_page(data, 1, "The keeper of the lighthouse is named Tobias Brennick.")
    assert not marked and yellow(plain) == 0


@pytest.mark.slow
def test_the_viewer_opens_pdf_markdown_and_ocr_sources(tmp_path, embedder):
    services = build_services(make_settings(tmp_path / "data", None), embedder=embedder)
    try:
        viewer = SourceViewer(services.documents, services.documents.ocr)
        md = tmp_path / "vellmora.md"
        md.write_text(FACTS, encoding="utf-8")
        scan = tmp_path / "crazy-scan.pdf"
        scan.write_bytes(scan_pdf((TESTDATA / "pdf" / "pypdf_crazyones.pdf").read_bytes()))
        for path, question, answer in (
                (md, "How tall is the lighthouse?", "The lighthouse is 47 meters tall."),
                (TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf", "What does TraceMonkey compile?",
                 "Trace trees are compiled into native machine code by the TraceMonkey compiler."),
                (scan, "Who are the crazy ones?", "The misfits, the rebels, the troublemakers.")):
            row, _ = services.documents.upload("local", path)
            index = PassageIndex.build(passages_of(row.doc_id, row.name, services.documents.pages("local", row.doc_id)))
            found = attribute(question, answer, [index])
            assert found.sources, (path.name, found)
            source = found.sources[0]
            view = viewer.open("local", {**source.__dict__})
            assert view.quote == source.quote and row.name in view.title
            if row.kind == "pdf":
                assert view.marked and yellow(view.image) > 500, (path.name, view.note)
                assert ("(OCR)" in view.title) == (path == scan)
            else:
                assert view.image is None and "Kestrel" not in view.quote
    finally:
        services.close()


def test_stemming_is_safe_from_many_threads_at_once():
    """Two answers are attributed at once in two turn workers; one shared Snowball stemmer raised IndexError."""
    import random
    import string
    import sys
    import threading

    from backend.grounding.words import _stem

    errors, interval = [], sys.getswitchinterval()

    def stem_many(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30_000):
                _stem("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 14))))
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=stem_many, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
