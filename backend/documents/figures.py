"""PDF pages that are mostly figures (a chart, a diagram, a photo with a caption), rendered for a vision model.

A page's text layer says little about a chart, so when asked (an upload's ``figures`` option, with a vision
model loaded) such a page is rendered by pypdfium2 and described by the model; the description becomes a
section of that page (``DESCRIPTION_SECTION``, laid in by ``extract``) and is searched, cached and cited like its text.

Which pages: pypdfium2 lists each page's objects with their bounds. The figure area is the area of its image
objects plus, when it has at least ``MIN_PATHS`` vector shapes (paths at least ``MIN_SHAPE`` wide and high:
a chart's bars and curves, a diagram's boxes; lines alone draw rules, frames and tables), the box around
them, as a share of the page (capped at 1). A page is mostly figure when that share is at least
``FIGURE_SHARE`` and its text is at most ``FIGURE_MAX_CHARS`` characters: a caption, axis labels. Chosen on
the shared test PDFs, where these are the only figure pages: ``pypdf_jpeg.pdf`` (a photo, 24 characters:
share 0.35), the UML diagram on page 9 of ``pypdf_GeoBase_NHNC1_Data_Model_UML_EN.pdf`` and the scanned
page of ``pdfjs_scan-bad.pdf``. Not figure pages: scans behind an OCR text layer
(``pypdf_Seige_of_Vicksburg_Sample_OCR.pdf``: share 1.0, about 2,000 characters), text pages with a table
or a small figure (``pdfjs_tracemonkey.pdf``), and GeoBase's copyright page inside a frame of 100 line
segments.
"""

from __future__ import annotations

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

FIGURE_SHARE = 0.3  # least share of the page covered by images or a vector drawing
FIGURE_MAX_CHARS = 600  # most characters of text on a figure page (a caption, labels)
MIN_PATHS = 10  # vector shapes that make a drawing (fewer: a box or two)
MIN_SHAPE = 2.0  # points: a path thinner than this either way is a line (a rule, a frame's side, a table's border)
RENDER_LONG_SIDE = 1024  # pixels of a rendered page's long side (the projector resizes and tiles it)


def figure_share(page: pdfium.PdfPage) -> float:
    """The share of a page covered by figures (images, and the box around its vector shapes when it has at
    least ``MIN_PATHS``), 0..1."""
    width, height = page.get_size()
    images, paths = 0.0, []
    for obj in page.get_objects(max_depth=3):
        left, bottom, right, top = obj.get_bounds()
        left, bottom, right, top = max(left, 0), max(bottom, 0), min(right, width), min(top, height)
        if right <= left or top <= bottom:
            continue
        if obj.type == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            images += (right - left) * (top - bottom)
        elif obj.type == pdfium_c.FPDF_PAGEOBJ_PATH and min(right - left, top - bottom) >= MIN_SHAPE:
            paths.append((left, bottom, right, top))
    drawing = 0.0
    if len(paths) >= MIN_PATHS:
        drawing = ((max(p[2] for p in paths) - min(p[0] for p in paths))
                   * (max(p[3] for p in paths) - min(p[1] for p in paths)))
    return min(1.0, (images + drawing) / (width * height)) if width * height > 0 else 0.0


def figure_pages(data: bytes, texts: dict[int, str], password: str | None = None) -> list[int]:
    """The pages of a PDF that are mostly figures (see the module docstring).

    Args:
        data: the PDF's bytes.
        texts: each page's extracted text, by 1-based page number.
        password: its password, if encrypted.

    Returns:
        1-based page numbers, in order.

    Raises:
        pypdfium2's ``PdfiumError``: the file cannot be opened.
    """
    pdf = pdfium.PdfDocument(data, password=password)
    try:
        return [i + 1 for i in range(len(pdf))
                if len(texts.get(i + 1, "").strip()) <= FIGURE_MAX_CHARS and figure_share(pdf[i]) >= FIGURE_SHARE]
    finally:
        pdf.close()


def render_pages(data: bytes, numbers: list[int], password: str | None = None,
                 long_side: int = RENDER_LONG_SIDE) -> dict[int, Image.Image]:
    """Render PDF pages as RGB images for a vision model.

    Args:
        data: the PDF's bytes.
        numbers: 1-based page numbers.
        password: its password, if encrypted.
        long_side: pixels of each image's long side.

    Returns:
        ``{page number: image}``.
    """
    pdf = pdfium.PdfDocument(data, password=password)
    try:
        out = {}
        for n in numbers:
            page = pdf[n - 1]
            scale = long_side / max(page.get_size())
            out[n] = page.render(scale=scale).to_pil().convert("RGB")
        return out
    finally:
        pdf.close()
