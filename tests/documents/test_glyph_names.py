"""PDFs whose fonts have no Unicode map: pypdf extracts their text as glyph names (``/G43/G24``), which the
app must count as unreadable and OCR. The two files are real, from pdf.js's test corpus
(``tests/data/pdfjs/MANIFEST.json``)."""

from __future__ import annotations

from pathlib import Path

import pypdf
import pytest
from conftest import TESTDATA, make_settings

from backend.documents import DocumentError, extract, needs_ocr, unreadable_share
from backend.services import build_services

PDFJS = Path(__file__).resolve().parents[1] / "data" / "pdfjs"
ODFJELL = PDFJS / "font_ascent_descent.pdf"  # "Odfjell Drilling Ltd. – ODL NO ... limited liquidity headroom"
PRICES = PDFJS / "bug1151216.pdf"  # "$300 for 1 / $150 for 2 / $50 for 3"


def test_glyph_name_pages_count_as_unreadable():
    for path in (ODFJELL, PRICES):
        text = pypdf.PdfReader(path).pages[0].extract_text()
        assert text.startswith(("/G43/G24", "/g936/g1007")), text[:40]  # what pypdf reads: names, not words
        assert unreadable_share(text) > 0.9 and needs_ocr(text), path.name
        with pytest.raises(DocumentError, match="probably a scanned image"):
            extract(path.read_bytes(), path.name)  # with OCR off, the page is not indexed as text
    for cid in ("(cid:45)(cid:72)(cid:79)(cid:79)(cid:82) (cid:90)(cid:82)(cid:85)(cid:79)(cid:71)",
                "/uni0048/uni0065/uni006C/uni006C/uni006F /uni0057/uni006F", "/one.oldstyle/six.oldstyle/eight.oldstyle"):
        assert needs_ocr(cid), cid


def test_paths_urls_and_pdf_names_in_real_text_stay_readable():
    for text in ("See http://www.example.org/docs/v2/index3.html for the I/O limits in km/h2.",
                 "Intersect /CropBox and /MediaBox, then read /Catalog and its /Pages tree again."):
        assert unreadable_share(text) == 0.0 and not needs_ocr(text), text
    tracemonkey = pypdf.PdfReader(TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf")
    assert not any(needs_ocr(page.extract_text()) for page in tracemonkey.pages)  # 14 pages of a real paper


@pytest.mark.slow  # OCR of two pages
def test_a_glyph_name_pdf_is_ocrd_and_its_real_words_are_searchable(tmp_path, tiny_model, embedder):
    services = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    try:
        odfjell, _ = services.documents.upload("local", ODFJELL)
        prices, _ = services.documents.upload("local", PRICES)
        assert odfjell.ocr_pages == 1 and prices.ocr_pages == 1
        text = services.documents.text("local", odfjell.doc_id).text
        assert "Odfjell Drilling" in text and "liquidity headroom" in text and "/G43" not in text, text
        assert "$300 for 1" in services.documents.text("local", prices.doc_id).text
        hits = services.documents.search("local", "Odfjell liquidity headroom", None, 3)
        assert hits[0].doc_id == odfjell.doc_id and hits[0].ocr and hits[0].page == 1, hits
    finally:
        services.close()
