"""Which PDF pages are mostly figures, on the shared test PDFs (no model): a photo, a UML diagram and a scan are;
text pages, a table, scans behind an OCR text layer and a page inside a frame of line segments are not."""

from __future__ import annotations

import pytest
from conftest import TESTDATA

from backend.documents import extract
from backend.documents.figures import figure_pages, figure_share, render_pages


def figures_of(name: str) -> list[int]:
    data = (TESTDATA / "pdf" / name).read_bytes()
    return figure_pages(data, {p.number: p.text for p in extract(data, name).pages})


@pytest.mark.parametrize(("name", "pages"), [
    ("pypdf_jpeg.pdf", [1]),  # a photo with a one-line caption
    ("pypdf_GeoBase_NHNC1_Data_Model_UML_EN.pdf", [9]),  # a UML diagram; page 2's frame of 100 lines is no figure
    ("pypdf_Seige_of_Vicksburg_Sample_OCR.pdf", []),  # page scans, but each under 2,000 characters of OCR text
    ("pdfjs_tracemonkey.pdf", []),  # a paper: text around its figures and tables
    ("sf_pdflatex-4-pages.pdf", []),
])
def test_figure_pages_of_real_pdfs(name, pages):
    assert figures_of(name) == pages


def test_a_figure_page_renders_for_the_vision_model_and_its_share_is_its_images():
    import pypdfium2 as pdfium

    data = (TESTDATA / "pdf" / "pypdf_jpeg.pdf").read_bytes()
    pdf = pdfium.PdfDocument(data)
    try:
        assert 0.3 <= figure_share(pdf[0]) < 0.5
    finally:
        pdf.close()
    (image,) = render_pages(data, [1], long_side=512).values()
    assert max(image.size) == 512 and image.mode == "RGB"
    assert len(set(image.convert("L").getdata())) > 16  # the photo, not a blank page
