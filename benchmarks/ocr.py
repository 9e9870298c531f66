"""OCR quality and speed on scans of our test PDFs: character error rate (CER) and seconds per page.

Each source PDF is rendered with pypdfium2 to greyscale images and saved back as an image-only PDF
(a "scan" with no text layer); that scan goes through the app's own extraction with OCR on, and the
text is compared with the ground truth: the testdata's ``pypdf_crazyones.txt``, else the source's own
text layer (pypdf). CER is the Levenshtein distance over the truth's length, after NFKC
normalisation (ligatures such as "ﬁ" become "fi") and with runs of whitespace made one space.

    .venv/bin/python benchmarks/ocr.py                       # the app's engine (rapidocr, PP-OCRv6)
    .venv/bin/python benchmarks/ocr.py --engines rapidocr rapidocr_onnxruntime   # side by side

``rapidocr_onnxruntime`` (the older PP-OCRv4 package) is compared when installed
(``pip install rapidocr-onnxruntime``); it is not a dependency of the app.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TESTDATA = ROOT.parent / "shared" / "testdata" / "pdf"
# single-column text PDFs with a clean text layer to compare against; multi-column pages are left
# out because CER then measures reading order, not recognition
PAGES = [("pypdf_crazyones.pdf", None), ("sf_pdflatex-4-pages.pdf", 2), ("sf_google-doc-document.pdf", 1)]


def scan_pdf(pdf: bytes, pages: int | None = None, scale: float = 2.0) -> bytes:
    """An image-only copy of a PDF, as a scanner would make it.

    Args:
        pdf: the source PDF's bytes.
        pages: how many leading pages to keep (None: all).
        scale: render scale over 72 dpi (2.0 = 144 dpi).

    Returns:
        The bytes of a PDF whose pages are greyscale images with no text layer.
    """
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    images = [doc[i].render(scale=scale).to_pil().convert("L") for i in range(min(len(doc), pages or len(doc)))]
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=72 * scale, save_all=True, append_images=images[1:])
    return out.getvalue()


def normalise(text: str) -> str:
    """NFKC, typographic apostrophes made plain, whitespace runs made one space."""
    return " ".join(unicodedata.normalize("NFKC", text).replace("\u2019", "'").split())


def cer(truth: str, text: str) -> float:
    """Character error rate of ``text`` against ``truth``: Levenshtein distance / len(truth), both normalised.

    Source: the standard OCR metric (e.g. ISRI OCR evaluation); distance by rapidfuzz.
    """
    from rapidfuzz.distance import Levenshtein

    a, b = normalise(truth), normalise(text)
    return Levenshtein.distance(a, b) / max(1, len(a))


def truth_of(name: str, pages: int | None) -> str:
    """Ground truth for the first ``pages`` pages of a test PDF."""
    txt = TESTDATA / name.replace(".pdf", ".txt")
    if txt.is_file():
        return txt.read_text(encoding="utf-8")
    import pypdf

    reader = pypdf.PdfReader(TESTDATA / name)
    return "\n".join(p.extract_text() or "" for p in reader.pages[: pages or len(reader.pages)])


def engine(name: str):
    """A ``read_pages``-style callable for an OCR engine."""
    if name == "rapidocr":
        from backend.documents import PageOcr

        return PageOcr().read_pages
    if name == "rapidocr_onnxruntime":
        import numpy as np
        import pypdfium2 as pdfium
        from rapidocr_onnxruntime import RapidOCR

        from backend.documents.ocr import layout_lines

        ocr = RapidOCR()

        def read_pages(data, numbers, password=None, progress=None):
            doc = pdfium.PdfDocument(data)
            out = {}
            for n in numbers:
                result, _ = ocr(np.asarray(doc[n - 1].render(scale=2.0).to_pil().convert("RGB")))
                result = result or []  # [(box, text, score)]; laid out like the app's engine's lines
                out[n] = layout_lines(np.asarray([r[0] for r in result]), [r[1] for r in result]) if result else ""
            return out

        return read_pages
    raise SystemExit(f"unknown engine {name}")


def main() -> None:
    """Print CER and seconds per page for each engine and test PDF."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["rapidocr"])
    parser.add_argument("--documents", type=int, default=len(PAGES), help="only the first N test PDFs (a smoke run)")
    args = parser.parse_args()
    from backend.documents import extract

    print(f"{'engine':22} {'document':28} {'pages':>5} {'s/page':>7} {'CER':>7}")
    for name in args.engines:
        try:
            read = engine(name)
        except ImportError:
            print(f"{name:22} not installed")
            continue
        cers = []
        for doc, pages in PAGES[: args.documents]:
            scan = scan_pdf((TESTDATA / doc).read_bytes(), pages)
            read(scan, [1])  # the first call loads the models: not timed
            t0 = time.perf_counter()
            extracted = extract(scan, doc, ocr=read)
            per_page = (time.perf_counter() - t0) / extracted.page_count
            cers.append(cer(truth_of(doc, pages), extracted.text))
            print(f"{name:22} {doc:28} {extracted.page_count:>5} {per_page:>7.2f} {cers[-1]:>7.2%}", flush=True)
        print(f"{name:22} {'median':28} {'':>5} {'':>7} {statistics.median(cers):>7.2%}")


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
