"""The source viewer: a cited passage shown where it is.

An uploaded image is shown with the quote marked over the OCR boxes that hold it.

A PDF page is rendered with pypdfium2 and the quote is marked on it: found in pdfium's own text layer
(whose characters carry boxes, ``PdfTextPage.count_rects``/``get_rect``) by a whitespace- and
case-insensitive match, else by its longest run in common; on a page read by OCR the quote is located
in the RapidOCR boxes' text the same way and those boxes are marked instead. Every kind (DOCX, Markdown, text, and PDFs too) also
gets the paragraph around the quote, with the quote's exact character span (from the stored page text
the citation's offsets point into).
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

import pypdfium2 as pdfium
from PIL import Image, ImageDraw
from pypdfium2 import PdfiumError

from backend.documents import DocumentError, DocumentService, ImageError, PageOcr, open_image

RENDER_SCALE = 1.5  # 108 dpi: a letter page is 918 x 1188 pixels
CONTEXT_CHARS = 400  # characters of context shown before and after a quote, at most
MARK_FILL = (255, 214, 0, 90)  # translucent yellow over the quote
MARK_EDGE = (230, 120, 0, 255)
MIN_RUN = 12  # shortest run of characters in common that still places a quote on a page


@dataclass(frozen=True)
class SourceView:
    """What the viewer shows for one citation.

    Attributes:
        title: ``name · p. 3 · Section``.
        image: the PDF page or uploaded image with the quote marked (None for other kinds, or when it cannot
            be rendered).
        marked: the quote was found on the image and marked.
        before / quote / after: the text around the quote, the quote itself, and what follows (from the
            stored page text, cut at paragraph breaks or ``CONTEXT_CHARS``).
        note: anything the user should know ("" when all went well), one sentence.
    """

    title: str
    image: Image.Image | None
    marked: bool
    before: str
    quote: str
    after: str
    note: str = ""


def _normalised(text: str) -> tuple[str, list[int]]:
    """``text`` lower-cased and NFKC-folded (``ﬁ`` -> ``fi``) with whitespace runs as one space and hyphens
    at line ends removed, and for each character of the result its index in ``text``."""
    out, where = [], []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "-" and i + 1 < len(text) and text[i + 1] in "\r\n":  # a word broken across lines
            i += 1
            while i < len(text) and text[i].isspace():
                i += 1
            continue
        if c.isspace() or c == "\u00ad":
            if out and out[-1] != " ":
                out.append(" ")
                where.append(i)
            i += 1
            continue
        for folded in unicodedata.normalize("NFKC", c).lower():
            out.append(folded)
            where.append(i)
        i += 1
    return "".join(out), where


def locate(haystack: str, quote: str) -> tuple[int, int] | None:
    """Where ``quote`` lies in ``haystack`` as ``(start, end)`` indexes of ``haystack``: an exact match
    after normalising whitespace, case and line-end hyphens, else the longest run of at least ``MIN_RUN``
    characters in common (a quote extracted by another PDF library can differ in a few characters)."""
    hay, where = _normalised(haystack)
    needle, _ = _normalised(quote.strip())
    if not needle or not hay:
        return None
    at = hay.find(needle)
    if at >= 0:
        return where[at], where[at + len(needle) - 1] + 1
    match = difflib.SequenceMatcher(None, hay, needle, autojunk=False).find_longest_match(0, len(hay), 0, len(needle))
    if match.size < min(MIN_RUN, len(needle)):
        return None
    start = max(0, match.a - match.b)  # stretch the run to the quote's length on both sides
    end = min(len(hay), match.a + match.size + (len(needle) - match.b - match.size))
    return where[start], where[end - 1] + 1


def _overlay(image: Image.Image, boxes: list[tuple[float, float, float, float]]) -> Image.Image:
    """``image`` with translucent marks over ``boxes`` (pixel ``(left, top, right, bottom)``)."""
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for left, top, right, bottom in boxes:
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=MARK_FILL, outline=MARK_EDGE, width=2)
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def mark_pdf_page(data: bytes, number: int, quote: str, scale: float = RENDER_SCALE,
                  ocr: PageOcr | None = None) -> tuple[Image.Image, bool]:
    """Render one PDF page with ``quote`` marked.

    Args:
        data: the PDF's bytes (not encrypted, or openable without a password).
        number: 1-based page number.
        quote: the text to mark.
        scale: render scale over 72 dpi.
        ocr: reads the page's pixels when its text layer does not hold the quote (a scanned page).

    Returns:
        ``(image, marked)``: the page as an RGB image, and whether the quote was found and marked.

    Raises:
        pypdfium2's ``PdfiumError``: the file cannot be opened or rendered (encrypted, damaged).
    """
    pdf = pdfium.PdfDocument(data)
    try:
        page = pdf[number - 1]
        image = page.render(scale=scale).to_pil().convert("RGB")
        height = page.get_height()
        textpage = page.get_textpage()
        span = locate(textpage.get_text_range(), quote)
        boxes = []
        if span is not None:
            for i in range(textpage.count_rects(span[0], span[1] - span[0])):
                left, bottom, right, top = textpage.get_rect(i)
                boxes.append((left * scale, (height - top) * scale, right * scale, (height - bottom) * scale))
        textpage.close()
        page.close()
    finally:
        pdf.close()
    if not boxes and ocr is not None:
        boxes = _ocr_boxes(ocr, image, quote)
    return (_overlay(image, boxes), True) if boxes else (image, False)


def mark_image(image: Image.Image, quote: str, ocr: PageOcr | None) -> tuple[Image.Image, bool]:
    """An uploaded image with ``quote`` marked where OCR reads it.

    Args:
        image: the image as uploaded (``open_image``), RGB.
        quote: the text to mark.
        ocr: reads the image's text boxes; None shows the image unmarked.

    Returns:
        ``(image, marked)``: the image, with the quote's boxes marked when it was found.
    """
    boxes = _ocr_boxes(ocr, image, quote) if ocr is not None else []
    return (_overlay(image, boxes), True) if boxes else (image, False)


def _ocr_boxes(ocr: PageOcr, image: Image.Image, quote: str) -> list[tuple[float, float, float, float]]:
    """Where ``quote`` lies among the OCR'd text boxes of ``image``: the boxes are joined in reading order,
    the quote is located in that text (``locate``), and each box it touches is marked over the share of
    its width that its quoted characters take."""
    found = ocr.read_image(image)
    lines, joined, starts = [], "", []
    for box, text in sorted(found, key=lambda f: (round(f[0][1] / 8), f[0][0])):
        starts.append(len(joined))
        lines.append((box, text))
        joined += text + " "
    span = locate(joined, quote)
    if span is None:
        return []
    out = []
    for (left, top, right, bottom), text, start in zip((b for b, _ in lines), (t for _, t in lines), starts):
        lo, hi = max(span[0], start), min(span[1], start + len(text))
        if lo < hi:
            width = (right - left) / max(1, len(text))
            out.append((left + (lo - start) * width, top, left + (hi - start) * width, bottom))
    return out


def context(text: str, start: int, end: int, limit: int = CONTEXT_CHARS) -> tuple[str, str, str]:
    """The text around ``text[start:end]``: from the paragraph break before it (at most ``limit``
    characters back) to the one after it (at most ``limit`` on).

    Returns:
        ``(before, quote, after)``; ``before`` starts and ``after`` ends with "…" when cut mid-paragraph.
    """
    para_start = text.rfind("\n\n", max(0, start - limit), start)
    lo = para_start + 2 if para_start >= 0 else max(0, start - limit)
    para_end = text.find("\n\n", end, end + limit)
    hi = para_end if para_end >= 0 else min(len(text), end + limit)
    before = ("…" if lo > 0 and para_start < 0 else "") + text[lo:start]
    after = text[end:hi] + ("…" if hi < len(text) and para_end < 0 else "")
    return before, text[start:end], after


class SourceViewer:
    """Opens citations: the page image with the quote marked (PDFs, images) and the text around it (every kind).

    Args:
        documents: the documents (rows, stored pages, original files).
        ocr: marks quotes on pages that were read by OCR (None: such pages show the text only).
    """

    def __init__(self, documents: DocumentService, ocr: PageOcr | None = None):
        self.documents, self.ocr = documents, ocr

    def open(self, owner: str, source: dict) -> SourceView:
        """Show one cited passage.

        Args:
            owner: the user (a citation of another owner's document is refused as unknown).
            source: a ``Source`` dict as saved with an answer (``doc_id``, ``part``, ``page``, ``start``,
                ``end``, ``quote``; ``section`` and ``name`` for the title).

        Returns:
            The view. A PDF that cannot be rendered (encrypted, damaged) still gets its text, with a note.

        Raises:
            DocumentError: the document was deleted or its stored text is gone.
        """
        row = self.documents.get(owner, source["doc_id"])
        pages = self.documents.pages(owner, source["doc_id"])
        part = source.get("part", 0)
        if not 0 <= part < len(pages):
            raise DocumentError(f"'{row.name}' has changed since this answer; ask the question again.")
        text = pages[part].text
        start, end = source["start"], source["end"]
        if text[start:end] != source["quote"]:  # re-indexed since: find the quote again
            found = locate(text, source["quote"])
            if found is None:
                raise DocumentError(f"'{row.name}' no longer holds this passage; ask the question again.")
            start, end = found
        before, quote, after = context(text, start, end)
        where = f"p. {source['page']}" + (" (OCR)" if pages[part].ocr else "")
        title = " · ".join(x for x in (row.name, where, source.get("section", "")) if x)
        if row.kind not in ("pdf", "image"):
            return SourceView(title, None, False, before, quote, after)
        try:
            data = self.documents.file_of(row).read_bytes()
            if row.kind == "image":
                image, marked = mark_image(open_image(data, row.name), quote, self.ocr)
            else:
                image, marked = mark_pdf_page(data, source["page"], quote, ocr=self.ocr if pages[part].ocr else None)
        except (PdfiumError, OSError, ImageError) as exc:  # encrypted or damaged, or the file is gone
            note = f"The {'image' if row.kind == 'image' else 'page'} could not be rendered (" + \
                re.sub(r"\s+", " ", str(exc))[:80] + "); its text is shown."
            return SourceView(title, None, False, before, quote, after, note)
        note = "" if marked else "The quote could not be placed on the image; it is marked in the text below."
        return SourceView(title, image, marked, before, quote, after, note)
