"""OCR of scanned PDFs with the real engine (RapidOCR, PP-OCRv6): scans made by rendering real test PDFs to
images and back into a PDF, so the ground truth is known; the character error rate is printed and checked."""

from __future__ import annotations

import io

import pypdf
import pytest
from conftest import TESTDATA, make_settings
from PIL import Image, ImageDraw, ImageFont

from backend.documents import DocumentError, PageOcr, extract, needs_ocr
from backend.services import build_services
from benchmarks.ocr import cer, scan_pdf, truth_of

pytestmark = pytest.mark.slow  # OCR of whole pages

CRAZY = TESTDATA / "pdf" / "pypdf_crazyones.pdf"


@pytest.fixture(scope="module")
def ocr() -> PageOcr:
    return PageOcr()


def test_a_scanned_pdf_reads_with_a_character_error_rate_under_5_percent(ocr):
    for name, pages in (("pypdf_crazyones.pdf", None), ("sf_pdflatex-4-pages.pdf", 2)):
        scan = scan_pdf((TESTDATA / "pdf" / name).read_bytes(), pages)
        with pytest.raises(DocumentError, match="probably a scanned image"):
            extract(scan, name)  # OCR off: no text layer
        doc = extract(scan, name, ocr=ocr.read_pages)
        rate = cer(truth_of(name, pages), doc.text)
        print(f"OCR CER {name}: {rate:.2%}")
        assert rate < 0.05, (name, rate, doc.text[:300])
        assert doc.ocr_pages == doc.page_count and all(p.ocr for p in doc.pages)
    assert "We make tools for these kinds of people." in extract(scan_pdf(CRAZY.read_bytes()), "c.pdf",
                                                                 ocr=ocr.read_pages).text


def test_only_the_image_page_of_a_text_pdf_is_ocrd(ocr):
    writer = pypdf.PdfWriter()
    source = pypdf.PdfReader(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")
    for page in source.pages[:2]:
        writer.add_page(page)
    writer.append(pypdf.PdfReader(io.BytesIO(scan_pdf(CRAZY.read_bytes()))))
    mixed = io.BytesIO()
    writer.write(mixed)
    calls = []

    def read_pages(data, numbers, password=None, progress=None):
        calls.append(list(numbers))
        return ocr.read_pages(data, numbers, password, progress)

    doc = extract(mixed.getvalue(), "mixed.pdf", ocr=read_pages)
    assert calls == [[3]]
    assert [p.ocr for p in doc.pages] == [False, False, True]
    assert doc.pages[0].text == extract(mixed.getvalue(), "mixed.pdf").pages[0].text  # text pages untouched
    assert cer(truth_of("pypdf_crazyones.pdf", None), doc.pages[2].text) < 0.05


def test_needs_ocr_spots_missing_and_garbage_text_layers():
    assert needs_ocr("") and needs_ocr("  12  \n") and needs_ocr("\ue000\ue001\ue002" * 10)
    assert not needs_ocr("The round pegs in the square holes.")
    assert not needs_ocr("مرحبا بالعالم، هذا نص عربي مقروء")  # any script that extracts as letters is text


def test_a_blank_scan_says_ocr_found_nothing(ocr):
    blank = io.BytesIO()
    Image.new("L", (600, 800), 255).save(blank, format="PDF", resolution=72)
    with pytest.raises(DocumentError, match="OCR found no text") as err:
        extract(blank.getvalue(), "blank.pdf", ocr=ocr.read_pages)
    assert "\n" not in str(err.value) and "blank.pdf" in str(err.value)


FACT_LINES = ["Harbor Lighthouse of Vellmora", "",
              "The Harbor Lighthouse of Vellmora was built in 1887 by the engineer Odile Marchetti.",
              "The lighthouse is 47 meters tall and its lamp is green.",
              "The keeper of the lighthouse is named Tobias Brennick."]


def scanned_facts(path) -> None:
    """A one-page image-only PDF of FACT_LINES, typed in Pillow's default font."""
    image = Image.new("L", (1240, 600), 255)
    draw, font = ImageDraw.Draw(image), ImageFont.load_default(size=28)
    for i, line in enumerate(FACT_LINES):
        draw.text((60, 50 + 44 * i), line, fill=0, font=font)
    image.save(path, format="PDF", resolution=144)


def test_a_scanned_pdf_uploads_and_the_real_model_answers_from_its_text(tmp_path, smollm2, embedder):
    scan = tmp_path / "vellmora-scan.pdf"
    scanned_facts(scan)
    settings = make_settings(tmp_path / "data", smollm2, n_ctx=2048, max_tokens=48, turn_datetime=False, n_threads=None)
    services = build_services(settings, embedder=embedder)
    try:
        steps = []
        doc, _ = services.documents.upload("local", scan, progress=lambda f, desc: steps.append(desc))
        assert doc.ocr_pages == 1 and "OCR page 1/1" in steps
        sid = services.sessions.create("local")
        for question, fact in (("Who built the Harbor Lighthouse of Vellmora?", "Odile Marchetti"),
                               ("Who is the keeper of the lighthouse?", "Tobias Brennick")):
            done = next(e for e in services.chat.stream_turn("local", sid, question, [doc.doc_id]) if e.kind == "done")
            assert fact.lower() in done.text.lower(), (question, done.text)
        hits = services.documents.search("local", "keeper of the lighthouse", [doc.doc_id], 1)
        assert hits[0].ocr and hits[0].page == 1
    finally:
        services.close()


def test_ocr_off_refuses_a_scan_with_the_setting_named(tmp_path, tiny_model, embedder):
    scan = tmp_path / "scan.pdf"
    scanned_facts(scan)
    services = build_services(make_settings(tmp_path / "data", tiny_model, ocr=False), embedder=embedder)
    try:
        with pytest.raises(DocumentError, match="KVC_OCR=true"):
            services.documents.upload("local", scan)
        assert services.documents.list("local") == []
    finally:
        services.close()

