"""OCR for PDF pages without a usable text layer: pypdfium2 renders them, RapidOCR reads them.

RapidOCR (``rapidocr``, PP-OCRv6 detection and recognition models as ONNX files shipped inside its
wheel, run by onnxruntime) works offline with nothing but the package index. It was picked over
``rapidocr-onnxruntime`` 1.4 (PP-OCRv4) on scans of our test pages at 144 dpi: median character error
rate 1.9 % against 11.7 % (the older models run words together), at about the same seconds per page
(``benchmarks/ocr.py``; README "OCR"). Tesseract needs a system package, so it was not an option.

A page is OCR'd when its text layer is missing or unreadable (``needs_ocr``); the lines RapidOCR
finds are put back in reading order, with a blank line where the vertical gap says a paragraph ends,
so paragraph-aligned chunking works on scans too.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from backend.documents.once import Once

log = logging.getLogger(__name__)

RENDER_SCALE = 2.0  # pypdfium2 renders at 72 dpi x scale: 144 dpi, where CER stopped improving (benchmarks/ocr.py)
MIN_TEXT_CHARS = 16  # fewer non-space characters than this in a text layer: treat the page as having none
MAX_UNREADABLE = 0.3  # share of unreadable characters that marks a text layer as garbage (benchmarks/unreadable.py)
# What pypdf (and pdfminer) put out for a font with neither a Unicode map nor standard glyph names: the
# glyph names themselves ("/g18/g152/g3", "/G43", "/uni0041", "/one.oldstyle/six.oldstyle") or CID
# numbers ("(cid:45)"). A name with a digit, a run of two or more names, or a CID; never the middle of
# a path or URL ("http://x.org/a/b2", "I/O"), whose slash follows a letter, digit, colon, dot or slash.
GLYPH_NAMES = re.compile(r"(?<![\w:/.])(?:(?:/[A-Za-z][\w.+-]*){2,}|/[A-Za-z]{0,5}\d[\w.]*)|\(cid:\d+\)")
PARAGRAPH_GAP = 0.9  # a vertical gap over this many line heights ends a paragraph

OcrProgress = Callable[[int, int], None]


def unreadable_share(text: str) -> float:
    """The share of a text layer's non-space characters that are not readable text.

    Unreadable are private-use glyphs, control characters, unassigned code points and U+FFFD, and
    the characters of glyph names and CID numbers (``GLYPH_NAMES``) that a font without a Unicode map
    extracts as.

    Args:
        text: a page's extracted text layer.

    Returns:
        A share in [0, 1]; 0.0 for a text with no non-space characters.
    """
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in ("Co", "Cc", "Cn", "Cs"))
    names = sum(len(m.group()) for m in GLYPH_NAMES.finditer(text))  # names hold no spaces
    return min(1.0, (bad + names) / len(chars))


def needs_ocr(text: str) -> bool:
    """Whether a page's text layer is missing or unreadable, so the page should be OCR'd.

    Args:
        text: the page's extracted text layer.

    Returns:
        True when it has fewer than ``MIN_TEXT_CHARS`` non-space characters, or when more than
        ``MAX_UNREADABLE`` of them are unreadable (``unreadable_share``): private-use glyphs,
        control characters, U+FFFD, glyph names or CID numbers, which a font without a Unicode map
        extracts as. The threshold is measured by ``benchmarks/unreadable.py`` (docs/benchmarks.md).
    """
    if sum(1 for c in text if not c.isspace()) < MIN_TEXT_CHARS:
        return True
    return unreadable_share(text) > MAX_UNREADABLE


def layout_lines(boxes: np.ndarray, texts: Sequence[str]) -> str:
    """Put OCR'd text boxes back in reading order.

    Boxes whose vertical centres lie within half a line height of each other form one line, read
    left to right; lines go top to bottom; a gap between lines wider than ``PARAGRAPH_GAP`` line
    heights becomes a blank line.

    Args:
        boxes: float array, shape (n, 4, 2): each box's four corners as (x, y) pixels.
        texts: the n recognised strings.

    Returns:
        The page text, ``\\n`` between lines and ``\\n\\n`` between paragraphs; ``""`` for no boxes.
    """
    if len(texts) == 0:
        return ""
    top, bottom = boxes[:, :, 1].min(axis=1), boxes[:, :, 1].max(axis=1)
    left = boxes[:, :, 0].min(axis=1)
    height = float(np.median(bottom - top)) or 1.0
    lines: list[list[int]] = []
    for i in np.argsort((top + bottom) / 2):
        centre = (top[i] + bottom[i]) / 2
        if lines and abs(centre - np.mean([(top[j] + bottom[j]) / 2 for j in lines[-1]])) < height / 2:
            lines[-1].append(int(i))
        else:
            lines.append([int(i)])
    out: list[str] = []
    for n, line in enumerate(lines):
        if n and min(top[j] for j in line) - max(bottom[j] for j in lines[n - 1]) > PARAGRAPH_GAP * height:
            out.append("")
        out.append(" ".join(texts[j].strip() for j in sorted(line, key=lambda j: left[j])))
    return "\n".join(out)


class PageOcr:
    """Reads the text of PDF pages from their pixels.

    The RapidOCR engine (about 30 MB of ONNX models) loads on first use, or ahead of it by the start-up warm-up
    (``load``), and is shared; calls are
    serialised, as onnxruntime already uses every core for one page.

    Args:
        scale: render scale over 72 dpi.
    """

    def __init__(self, scale: float = RENDER_SCALE):
        self.scale = scale
        self._engine = Once(self._make, "the OCR engine")
        self._lock = threading.Lock()

    @staticmethod
    def _make():
        from rapidocr import RapidOCR  # imported here: onnxruntime and OpenCV load only when needed

        return RapidOCR(params={"Global.log_level": "warning"})

    def _load(self):
        """The RapidOCR engine (created once: on first use, or by the start-up warm-up's ``load``)."""
        return self._engine.get()

    def load(self) -> None:
        """Create the RapidOCR engine now, if nobody has (the start-up warm-up).

        Raises:
            LoadError: it could not be created (one sentence).
        """
        self._engine.get()

    @property
    def state(self) -> str:
        """``waiting``, ``loading``, ``ready (seconds)`` or ``failed: why`` (``Once.state``)."""
        return self._engine.state

    def read_pages(self, data: bytes, numbers: Sequence[int], password: str | None = None,
                   progress: OcrProgress | None = None) -> dict[int, str]:
        """OCR some pages of a PDF.

        Args:
            data: the PDF's bytes.
            numbers: 1-based page numbers to read.
            password: the PDF's password, if it is encrypted.
            progress: called as ``progress(pages_done, pages_total)`` after each page.

        Returns:
            ``{page number: text}`` (text ``""`` where nothing was recognised).

        Raises:
            OSError or pypdfium2's ``PdfiumError``: the file cannot be rendered.
        """
        import pypdfium2 as pdfium

        out: dict[int, str] = {}
        with self._lock:
            engine = self._load()
            pdf = pdfium.PdfDocument(data, password=password)
            try:
                for done, number in enumerate(numbers, 1):
                    page = pdf[number - 1]
                    image = np.asarray(page.render(scale=self.scale).to_pil().convert("RGB"))
                    page.close()
                    result = engine(image)
                    texts = list(result.txts or [])
                    out[number] = layout_lines(np.asarray(result.boxes), texts) if texts else ""
                    if progress:
                        progress(done, len(numbers))
            finally:
                pdf.close()
        log.info("OCR read %d pages (%d characters)", len(out), sum(len(t) for t in out.values()))
        return out

    def read_text(self, image) -> str:
        """OCR one image into text in reading order (an uploaded screenshot or photo of a page).

        Args:
            image: a PIL image (any mode).

        Returns:
            The text, lines in reading order with blank lines between paragraphs (``layout_lines``);
            ``""`` when nothing was recognised.
        """
        with self._lock:
            result = self._load()(np.asarray(image.convert("RGB")))
        texts = list(result.txts or [])
        return layout_lines(np.asarray(result.boxes), texts) if texts else ""

    def read_image(self, image) -> list[tuple[tuple[float, float, float, float], str]]:
        """OCR one image and return each text box with where it is (the source viewer marks quotes with it).

        Args:
            image: a PIL image (any mode).

        Returns:
            ``[((left, top, right, bottom), text), ...]`` in pixels of ``image``, in RapidOCR's order.
        """
        with self._lock:
            result = self._load()(np.asarray(image.convert("RGB")))
        texts = list(result.txts or [])
        if not texts:
            return []
        boxes = np.asarray(result.boxes)
        return [((float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 0].max()), float(b[:, 1].max())), t)
                for b, t in zip(boxes, texts)]
