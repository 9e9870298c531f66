"""Text extraction: PDF (pypdf), DOCX (python-docx), TXT/Markdown (charset-normalizer) and images (OCR).

``extract(data, filename)`` sniffs the real type from the bytes, checks it agrees with the
extension, and returns the text as pages (1-based page numbers) split further by section
(Markdown and DOCX headings), so every chunk can say where it came from. Every failure raises
``DocumentError`` whose message is one plain sentence meant for the user.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

import charset_normalizer
import pypdf
from markdown_it import MarkdownIt
from mdit_py_plugins.front_matter import front_matter_plugin
from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError
from pypdfium2 import PdfiumError

from backend.documents.docx_text import docx_blocks
from backend.documents.figures import figure_pages, render_pages
from backend.documents.images import MAX_IMAGE_PIXELS, ImageError, ImageText, open_image
from backend.documents.kinds import EXTENSIONS, KIND_NAMES, sniff
from backend.documents.ocr import MAX_UNREADABLE, needs_ocr, unreadable_share
from backend.documents.sandbox import TimeLimit, run_limited

log = logging.getLogger(__name__)



class DocumentError(ValueError):
    """A document cannot be read; ``str(err)`` is one sentence telling the user what to do."""


class PasswordRequired(DocumentError):
    """The PDF is encrypted and the password given (if any) does not open it."""


# When charset-normalizer scores several encodings equally, prefer the common ones, in the
# order of the WHATWG Encoding Standard's defaults (UTF-8, then windows-1252, which browsers
# also use for ISO-8859-1 labels). Without this, Portuguese Latin-1 text read as cp1250.
PREFERRED_ENCODINGS = ("utf_8", "cp1252", "latin_1", "iso8859_15")
SECTION_SEP = " > "
DESCRIPTION_SECTION = "Description by the vision model"  # the section an image's description is stored under


@dataclass(frozen=True)
class Page:
    """A run of extracted text on one page under one section title.

    Attributes:
        number: 1-based page number (always 1 for DOCX and text files).
        text: the text, ``\\n`` line endings.
        section: the heading path it sits under, e.g. ``Options > Reader options``; ``""`` if none.
        ocr: the text was read from the page's pixels (it had no usable text layer).
    """

    number: int
    text: str
    section: str = ""
    ocr: bool = False


@dataclass(frozen=True)
class Extracted:
    """The text of one document.

    Attributes:
        kind: ``pdf``, ``docx``, ``txt``, ``md`` or ``image``.
        pages: pages in reading order; at least one has non-blank text.
    """

    kind: str
    pages: list[Page]

    @property
    def text(self) -> str:
        """All pages joined with blank lines."""
        return "\n\n".join(p.text for p in self.pages if p.text.strip())

    @property
    def ocr_pages(self) -> int:
        """Number of pages whose text came from OCR."""
        return len({p.number for p in self.pages if p.ocr})

    @property
    def page_count(self) -> int:
        """Number of pages (the highest page number)."""
        return max((p.number for p in self.pages), default=0)


Ocr = Callable[..., dict[int, str]]  # PageOcr.read_pages: (data, page_numbers, password, progress) -> {page: text}


def extract(data: bytes, filename: str, password: str | None = None,
            progress: Callable[[int, int, str], None] | None = None, ocr: Ocr | None = None,
            image_text: ImageText | None = None, max_image_pixels: int = MAX_IMAGE_PIXELS,
            describe: ImageText | None = None, figures: bool = False,
            time_limit_s: float | None = None) -> Extracted:
    """Extract the text of an uploaded file.

    Args:
        data: the file's bytes.
        filename: the name the user gave it; its extension selects the expected type.
        password: PDF user password, if the file is encrypted.
        progress: called as ``progress(pages_done, pages_total, what)`` while a PDF is read;
            ``what`` is ``"Extracting page"``, then ``"OCR page"`` for the pages being OCR'd.
        ocr: reads text from page pixels, called as ``ocr(data, page_numbers, password, progress)``
            (``PageOcr.read_pages``) for the PDF pages whose text layer is missing or unreadable
            (``needs_ocr``); None leaves missing text layers empty and empties unreadable ones.
        image_text: reads the text of an image (``PageOcr.read_text``); None refuses images.
        max_image_pixels: the most pixels an uploaded image may have (width x height).
        describe: describes an image in words (a vision model); its description becomes a section of the
            image's page, ``DESCRIPTION_SECTION``, so an image without text is a document too. None: OCR only.
        figures: also describe the PDF pages that are mostly figures (``backend.documents.figures``), each
            description a ``DESCRIPTION_SECTION`` run after its page; needs ``describe``.
        time_limit_s: read the bytes (``parse``) in a child process allowed this many seconds
            (``backend.documents.sandbox``); a file past it, or one that crashes its reader, is refused with one
            sentence. None reads them here, with page progress.

    Returns:
        The document's pages; OCR'd pages (and an image's one page) have ``ocr=True``.

    Raises:
        DocumentError: unsupported extension, empty file, type mismatch, unreadable or
            truncated file, reading past the time limit, no text (a scanned PDF with OCR off, or one where OCR found none),
            an image with OCR off, too many pixels, or no text found in it.
        PasswordRequired: an encrypted PDF without the right password.
    """
    if time_limit_s:
        try:
            kind, pages = run_limited(parse, (data, filename, password, max_image_pixels), time_limit_s)
        except TimeLimit as exc:
            log.warning("reading %s stopped: %s", filename, exc)
            raise DocumentError(f"'{filename}' could not be read ({exc}); it is probably damaged, or made to be slow "
                                "to read: save or export it again and re-upload.") from exc
    else:
        kind, pages = parse(data, filename, password, max_image_pixels, progress)
    if kind == "image":
        return Extracted(kind="image", pages=_image_pages(data, filename, image_text, max_image_pixels, describe))
    if kind == "pdf":
        if ocr is not None:
            pages = _ocr_pages(pages, data, filename, password, progress, ocr)
        else:  # junk (glyph names, private-use glyphs) is never indexed as if it were text
            pages = [Page(p.number, "", p.section) if unreadable_share(p.text) > MAX_UNREADABLE else p for p in pages]
        if figures and describe is not None:
            pages = _described_figures(pages, data, filename, password, progress, describe)
    if not any(p.text.strip() for p in pages):
        if kind == "pdf" and ocr is not None:
            raise DocumentError(f"'{filename}' has no text layer and OCR found no text on its pages; "
                                "if it is a scan, scan it again at a higher resolution and re-upload.")
        if kind == "pdf":
            raise DocumentError(
                f"'{filename}' has no readable text layer; it is probably a scanned image or uses fonts "
                "without a text map, so turn on OCR "
                "(KVC_OCR=true) or run OCR on it yourself and upload the result."
            )
        raise DocumentError(f"'{filename}' contains no text to read.")
    return Extracted(kind=kind, pages=pages)


def parse(data: bytes, filename: str, password: str | None = None, max_image_pixels: int = MAX_IMAGE_PIXELS,
          progress: Callable[[int, int, str], None] | None = None) -> tuple[str, list[Page]]:
    """The part of ``extract`` that reads the file's bytes with the parsers (what runs under the time limit, in a
    child process): its real type checked against its extension, and the text of a PDF's text layer, a DOCX or a
    text file; an image is only checked here (and read again by ``extract`` for OCR).

    Returns:
        ``(kind, pages)``: ``pdf``, ``docx``, ``txt``, ``md`` or ``image`` (pages empty).

    Raises:
        DocumentError / PasswordRequired: as ``extract``.
    """
    ext = PurePath(filename).suffix.lower()
    expected = EXTENSIONS.get(ext)
    if expected is None:
        raise DocumentError(
            f"'{filename}' has an unsupported type ({ext or 'no extension'}); upload a PDF, DOCX, TXT, Markdown "
            "or image (PNG, JPEG, WebP, GIF) file."
        )
    if not data:
        raise DocumentError(f"'{filename}' is empty (0 bytes); choose a file that has content.")
    if expected == "image":
        try:
            open_image(data, filename, max_image_pixels)
        except ImageError as exc:
            raise DocumentError(str(exc)) from exc
        return "image", []
    actual = sniff(data)
    if actual == "binary":
        raise DocumentError(f"'{filename}' is not {KIND_NAMES[expected]}: its contents are binary data of no kind the "
                            "app reads; check that it is the file you meant, saved whole, and upload it again.")
    if actual != expected and not (expected in ("txt", "md") and actual == "txt"):
        raise DocumentError(
            f"'{filename}' is named {ext} but its contents are {KIND_NAMES.get(actual, actual)}; "
            "save it in the right format (or fix its extension) and upload it again."
        )
    if actual == "pdf":
        return "pdf", _pdf_pages(data, filename, password, progress)
    if actual == "docx":
        return "docx", _docx_pages(data, filename)
    if expected == "md":
        return "md", markdown_sections(_decode_text(data, filename))
    return "txt", [Page(1, _decode_text(data, filename))]


def _image_pages(data: bytes, filename: str, image_text: ImageText | None, max_pixels: int,
                 describe: ImageText | None) -> list[Page]:
    """The text of an image as one OCR'd page, and its description by a vision model as a section of it;
    see ``extract`` for errors."""
    try:
        image = open_image(data, filename, max_pixels)
    except ImageError as exc:
        raise DocumentError(str(exc)) from exc
    if image_text is None and describe is None:
        raise DocumentError(f"'{filename}' is an image, and images are read by OCR, which is off; "
                            "turn it on (KVC_OCR=true) or upload the text instead.")
    text = normalize_text(image_text(image)) if image_text else ""
    described = normalize_text(describe(image)).strip() if describe else ""
    pages = ([Page(1, text, ocr=True)] if text.strip() else []) + \
        ([Page(1, described, DESCRIPTION_SECTION)] if described else [])
    if not pages:
        raise DocumentError(f"OCR found no text in '{filename}'; an image can be a document only when it holds "
                            "text (a screenshot, a photo of a page) or a vision model is loaded to describe it, so "
                            "upload a sharper picture or the text itself.")
    return pages


def _pdf_pages(data: bytes, filename: str, password: str | None,
               progress: Callable[[int, int, str], None] | None) -> list[Page]:
    """Read a PDF non-strictly with pypdf; see ``extract`` for errors."""
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # pypdf tries the empty user password itself; decrypt() returns 0 when nothing opened.
            opened = reader.decrypt(password or "")
            if not opened:
                raise PasswordRequired(
                    f"'{filename}' is password-protected; enter its password and upload it again."
                    if not password else
                    f"The password for '{filename}' is wrong; check it and try again."
                )
        pages = []
        total = len(reader.pages)
        for i, page in enumerate(reader.pages):
            pages.append(Page(i + 1, normalize_text(page.extract_text() or "")))
            if progress:
                progress(i + 1, total, "Extracting page")
    except DocumentError:
        raise
    except PdfStreamError as exc:  # pypdf hit the end of the data early: a cut-off file
        raise DocumentError(
            f"'{filename}' is incomplete (the file ends too early), probably a cut-off download; "
            "download or export it again and re-upload."
        ) from exc
    except FileNotDecryptedError as exc:
        raise PasswordRequired(f"'{filename}' is password-protected; enter its password and upload it again.") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError,
            NotImplementedError) as exc:  # NotImplementedError: a stream filter pypdf lacks, or a damaged name of one
        log.info("pypdf failed on %s: %s", filename, exc)
        raise DocumentError(f"'{filename}' could not be read as a PDF (it looks damaged); export it again and re-upload.") from exc
    return pages


def _ocr_pages(pages: list[Page], data: bytes, filename: str, password: str | None,
               progress: Callable[[int, int, str], None] | None, ocr: Ocr) -> list[Page]:
    """Replace the pages whose text layer is missing or unreadable by their OCR'd text."""
    numbers = [p.number for p in pages if needs_ocr(p.text)]
    if not numbers:
        return pages
    log.info("%s: OCR of %d of %d pages", filename, len(numbers), len(pages))
    try:
        texts = ocr(data, numbers, password, (lambda done, total: progress(done, total, "OCR page")) if progress else None)
    except Exception as exc:  # pdfium and onnxruntime raise their own types for unrenderable pages
        log.warning("OCR failed on %s: %s", filename, exc)
        raise DocumentError(f"'{filename}' has pages without a text layer and OCR could not read them; "
                            "export it again as a PDF and re-upload.") from exc
    return [Page(p.number, normalize_text(texts[p.number]), p.section, ocr=True) if texts.get(p.number, "").strip() else p
            for p in pages]


def _described_figures(pages: list[Page], data: bytes, filename: str, password: str | None,
                       progress: Callable[[int, int, str], None] | None, describe: ImageText) -> list[Page]:
    """The pages with a description by the vision model after each page that is mostly figure (none for a page
    the model says nothing about, and none at all when pdfium cannot render the file: logged)."""
    try:
        numbers = figure_pages(data, {p.number: p.text for p in pages}, password)
        images = render_pages(data, numbers, password)
    except (PdfiumError, OSError, ValueError) as exc:  # a file pdfium cannot render: its text is still good
        log.warning("figure pages of %s not rendered: %s", filename, exc)
        return pages
    log.info("%s: describing %d figure pages", filename, len(numbers))
    described = {}
    for i, number in enumerate(numbers):
        text = normalize_text(describe(images[number])).strip()
        if text:
            described[number] = Page(number, text, DESCRIPTION_SECTION)
        if progress:
            progress(i + 1, len(numbers), "Describing figure page")
    out = []
    for p in pages:
        out.append(p)
        if p.number in described:
            out.append(described.pop(p.number))
    return out


def _docx_pages(data: bytes, filename: str) -> list[Page]:
    """Read a DOCX (see ``backend.documents.docx_text``) into sections split at its headings."""
    try:
        blocks = docx_blocks(data)
    except Exception as exc:  # python-docx raises several unrelated types for broken packages
        log.info("python-docx failed on %s: %s", filename, exc)
        raise DocumentError(f"'{filename}' could not be read as a Word document (it looks damaged); save it again and re-upload.") from exc
    return _sections([(b.heading, b.text, b.text) for b in blocks])


def _sections(lines: list[tuple[int | None, str, str]]) -> list[Page]:
    """Group lines into sections titled by their heading path.

    Args:
        lines: ``(heading_level or None, heading_title, line_text)``; a line with a level starts
            a section (its text stays in the section).
    """
    pages: list[Page] = []
    path: list[tuple[int, str]] = []
    current: list[str] = []

    def flush() -> None:
        text = normalize_text("\n".join(current)).strip("\n")
        if text.strip():
            pages.append(Page(1, text, SECTION_SEP.join(t for _, t in path)))
        current.clear()

    for level, title, text in lines:
        if level is not None:
            flush()
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, " ".join(title.split())))
        current.append(text)
    flush()
    return pages


def markdown_sections(text: str) -> list[Page]:
    """Split Markdown at its ATX and setext headings, keeping every source line.

    Headings are found by markdown-it-py (CommonMark, plus YAML front matter), so a ``#`` line
    inside a code block, or the ``---`` closing a front-matter block, is not one. Each section's
    text starts with its heading's own lines.

    Args:
        text: the decoded Markdown, ``\\n`` line endings.

    Returns:
        Sections in order (page 1), each titled with its heading path; one untitled section
        when there are no headings.
    """
    tokens = MarkdownIt("commonmark").use(front_matter_plugin).parse(text)
    starts = {tok.map[0]: (int(tok.tag[1:]), _plain(tokens[i + 1]))
              for i, tok in enumerate(tokens) if tok.type == "heading_open" and tok.map}
    return _sections([(*starts.get(n, (None, "")), line) for n, line in enumerate(text.split("\n"))])


def _plain(inline) -> str:
    """The plain text of an inline token: link text without URLs, code without backticks."""
    children = inline.children or []
    return "".join(c.content for c in children if c.type in ("text", "code_inline")) or inline.content


def _decode_text(data: bytes, filename: str) -> str:
    """Decode text bytes with charset-normalizer; BOMs are removed, CRLF becomes LF."""
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise DocumentError(f"'{filename}' does not look like text in any known encoding; save it as UTF-8 and re-upload.")
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    rank = {enc: i for i, enc in enumerate(PREFERRED_ENCODINGS)}
    best = min(tied, key=lambda m: rank.get(m.encoding, len(rank)))  # min() keeps the first on ties
    return normalize_text(str(best))


def normalize_text(text: str) -> str:
    """Normalize line endings and drop NULs and a leading BOM, as every extracted page's text is.

    Args:
        text: text as a reader returned it.

    Returns:
        The text with ``\\n`` line endings, no NUL characters and no leading U+FEFF.
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").lstrip("\ufeff")
