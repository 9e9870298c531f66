"""Write small real PDFs of made-up text (pdfium's own writer, standard Helvetica), for tests whose
answers must come from the document and whose pages must be told apart."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pypdfium2 as pdfium
from pypdfium2 import raw


def write_pdf(path: Path, pages: list[list[str]], size: float = 12.0) -> Path:
    """A PDF with one page per entry of ``pages``, each line of it set in Helvetica from the top left.

    Args:
        path: where to write.
        pages: the lines of each page.
        size: font size, points.

    Returns:
        ``path``.
    """
    pdf = pdfium.PdfDocument.new()
    for lines in pages:
        page = pdf.new_page(612, 792)
        y = 720.0
        for line in lines:
            obj = raw.FPDFPageObj_NewTextObj(pdf.raw, b"Helvetica", ctypes.c_float(size))
            text = ctypes.create_string_buffer((line + "\0").encode("utf-16-le"))
            raw.FPDFText_SetText(obj, ctypes.cast(text, ctypes.POINTER(raw.FPDF_WCHAR)))
            raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, 72, y)
            raw.FPDFPage_InsertObject(page.raw, obj)
            y -= size * 1.5
        raw.FPDFPage_GenerateContent(page.raw)
        page.close()
    pdf.save(str(path))
    pdf.close()
    return Path(path)
