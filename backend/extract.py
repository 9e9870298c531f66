"""Text extraction: PDF (pypdf), DOCX (python-docx) and TXT/Markdown (charset-normalizer).

``extract(data, filename)`` sniffs the real type from the bytes, checks it agrees with the
extension, and returns pages of text with 1-based page numbers. Every failure raises
``DocumentError`` whose message is one plain sentence meant for the user.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import PurePath

import charset_normalizer
import docx
import pypdf
from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

log = logging.getLogger(__name__)

EXTENSIONS = {".pdf": "pdf", ".docx": "docx", ".txt": "txt", ".md": "md", ".markdown": "md"}
KIND_NAMES = {"pdf": "a PDF", "docx": "a Word (DOCX) file", "txt": "plain text", "md": "plain text",
              "html": "an HTML page", "zip": "a ZIP archive", "binary": "binary data"}


class DocumentError(ValueError):
    """A document cannot be read; ``str(err)`` is one sentence telling the user what to do."""


class PasswordRequired(DocumentError):
    """The PDF is encrypted and the password given (if any) does not open it."""


@dataclass(frozen=True)
class Page:
    """One page of extracted text.

    Attributes:
        number: 1-based page number (always 1 for DOCX and text files).
        text: the page's text, ``\\n`` line endings.
    """

    number: int
    text: str


@dataclass(frozen=True)
class Extracted:
    """The text of one document.

    Attributes:
        kind: ``pdf``, ``docx``, ``txt`` or ``md``.
        pages: pages in reading order; at least one has non-blank text.
    """

    kind: str
    pages: list[Page]

    @property
    def text(self) -> str:
        """All pages joined with blank lines."""
        return "\n\n".join(p.text for p in self.pages if p.text.strip())


def sniff(data: bytes) -> str:
    """Guess a file's real type from its leading bytes.

    Args:
        data: the file's bytes.

    Returns:
        One of ``pdf``, ``docx``, ``zip``, ``html``, ``binary`` or ``txt``.
    """
    head = data[:1024]
    if b"%PDF-" in head:  # the header may follow junk bytes (PDF 32000-1, 7.5.2 tolerance)
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return "docx" if "word/document.xml" in zf.namelist() else "zip"
        except zipfile.BadZipFile:
            return "binary"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "txt"


def extract(data: bytes, filename: str, password: str | None = None) -> Extracted:
    """Extract the text of an uploaded file.

    Args:
        data: the file's bytes.
        filename: the name the user gave it; its extension selects the expected type.
        password: PDF user password, if the file is encrypted.

    Returns:
        The document's pages.

    Raises:
        DocumentError: unsupported extension, empty file, type mismatch, unreadable or
            truncated file, no text (e.g. a scanned PDF).
        PasswordRequired: an encrypted PDF without the right password.
    """
    ext = PurePath(filename).suffix.lower()
    expected = EXTENSIONS.get(ext)
    if expected is None:
        raise DocumentError(
            f"'{filename}' has an unsupported type ({ext or 'no extension'}); upload a PDF, DOCX, TXT or Markdown file."
        )
    if not data:
        raise DocumentError(f"'{filename}' is empty (0 bytes); choose a file that has content.")
    actual = sniff(data)
    if actual != expected and not (expected in ("txt", "md") and actual == "txt"):
        raise DocumentError(
            f"'{filename}' is named {ext} but its contents are {KIND_NAMES.get(actual, actual)}; "
            "save it in the right format (or fix its extension) and upload it again."
        )
    if actual == "pdf":
        pages = _pdf_pages(data, filename, password)
    elif actual == "docx":
        pages = _docx_pages(data, filename)
    else:
        pages = [Page(1, _decode_text(data, filename))]
    if not any(p.text.strip() for p in pages):
        if actual == "pdf":
            raise DocumentError(
                f"'{filename}' has no text layer; it is probably a scanned image, so run OCR on it "
                "(for example with ocrmypdf) and upload the result."
            )
        raise DocumentError(f"'{filename}' contains no text to read.")
    return Extracted(kind=expected, pages=pages)


def _pdf_pages(data: bytes, filename: str, password: str | None) -> list[Page]:
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
        pages = [Page(i + 1, _normalize(page.extract_text() or "")) for i, page in enumerate(reader.pages)]
    except DocumentError:
        raise
    except PdfStreamError as exc:  # pypdf hit the end of the data early: a cut-off file
        raise DocumentError(
            f"'{filename}' is incomplete (the file ends too early), probably a cut-off download; "
            "download or export it again and re-upload."
        ) from exc
    except FileNotDecryptedError as exc:
        raise PasswordRequired(f"'{filename}' is password-protected; enter its password and upload it again.") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as exc:
        log.info("pypdf failed on %s: %s", filename, exc)
        raise DocumentError(f"'{filename}' could not be read as a PDF (it looks damaged); export it again and re-upload.") from exc
    return pages


def _docx_pages(data: bytes, filename: str) -> list[Page]:
    """Read a DOCX body in document order (paragraphs and table rows), plus headers/footers once."""
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises several unrelated types for broken packages
        log.info("python-docx failed on %s: %s", filename, exc)
        raise DocumentError(f"'{filename}' could not be read as a Word document (it looks damaged); save it again and re-upload.") from exc
    lines: list[str] = []
    seen_hf: set[str] = set()
    for section in document.sections:
        for part in (section.header, section.footer):
            text = "\n".join(p.text for p in part.paragraphs if p.text.strip())
            if text and text not in seen_hf:
                seen_hf.add(text)
                lines.append(text)
    for block in document.iter_inner_content():
        if isinstance(block, docx.table.Table):
            for row in block.rows:
                cells = [c.text.strip() for c in row.cells]
                if any(cells):
                    lines.append(" | ".join(cells))
        elif block.text.strip():
            lines.append(block.text)
    return [Page(1, _normalize("\n".join(lines)))]


def _decode_text(data: bytes, filename: str) -> str:
    """Decode text bytes with charset-normalizer; BOMs are removed, CRLF becomes LF."""
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise DocumentError(f"'{filename}' does not look like text in any known encoding; save it as UTF-8 and re-upload.")
    return _normalize(str(best))


def _normalize(text: str) -> str:
    """Normalize line endings and drop NULs and a leading BOM."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").lstrip("\ufeff")
