"""Where to draw the line between a readable text layer and garbage: the unreadable share of real PDF pages.

A page whose text layer is mostly glyph names (``/g18/g152``), CID numbers (``(cid:45)``), private-use
or control characters is OCR'd instead of indexed (``backend.documents.ocr.needs_ocr``). This script
reads every page of every PDF in the given folders with pypdf, as the app does, computes
``unreadable_share`` per page, and prints how many pages each threshold would send to OCR, with the
pages in the ambiguous middle listed so a person can judge them.

    .venv/bin/python benchmarks/unreadable.py                          # the shared test PDFs
    .venv/bin/python benchmarks/unreadable.py ../shared/testdata/pdf /tmp/pdfjs/test/pdfs

pdf.js keeps about a thousand PDFs from bug reports in ``test/pdfs`` of its repository; several have
fonts with glyph names only (docs/benchmarks.md, "Unreadable text layers").
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.documents.extract import normalize_text
from backend.documents.ocr import GLYPH_NAMES, MAX_UNREADABLE, MIN_TEXT_CHARS, unreadable_share

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
MIDDLE = (0.05, 0.8)  # shares listed page by page: neither clean text nor plain garbage


def page_texts(path: Path, seconds: int = 20) -> list[str]:
    """Each page's text layer as the app reads it (pypdf, non-strict, normalised); [] for a file pypdf cannot open,
    an encrypted one, or one that takes over ``seconds`` seconds."""
    import pypdf

    def give_up(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        reader = pypdf.PdfReader(io.BytesIO(path.read_bytes()), strict=False)
        if reader.is_encrypted:
            return []
        return [normalize_text(page.extract_text() or "") for page in reader.pages]
    except Exception:  # noqa: BLE001 - a corpus of bug reports: anything pypdf raises means "not readable here"
        return []
    finally:
        signal.alarm(0)


def main() -> None:
    """Print the per-threshold page counts and the ambiguous pages."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, default=[ROOT.parent / "shared" / "testdata" / "pdf"])
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # pypdf warns on every malformed file of a bug-report corpus
    for folder in args.folders:
        shares: list[tuple[float, str, int, str]] = []
        names: dict[tuple[str, int], float] = {}  # the share of glyph names and CIDs alone
        files = sorted(folder.glob("*.pdf"))
        for path in files:
            for number, text in enumerate(page_texts(path), 1):
                if sum(1 for c in text if not c.isspace()) >= MIN_TEXT_CHARS:  # shorter ones are OCR'd anyway
                    shares.append((unreadable_share(text), path.name, number, text))
                    named = sum(len(m.group()) for m in GLYPH_NAMES.finditer(text))
                    names[path.name, number] = named / sum(1 for c in text if not c.isspace())
        print(f"\n{folder}: {len(files)} PDFs, {len(shares)} pages with at least {MIN_TEXT_CHARS} characters")
        print("| threshold | pages sent to OCR | of them, by glyph names or CIDs alone |\n|---:|---:|---:|")
        for t in THRESHOLDS:
            mark = " (the app's)" if t == MAX_UNREADABLE else ""
            sent = [(name, number) for s, name, number, _ in shares if s > t]
            print(f"| {t:.2f}{mark} | {len(sent)} | {sum(1 for key in sent if names[key] > t)} |")
        middle = sorted(s for s in shares if MIDDLE[0] < s[0] < MIDDLE[1])
        print(f"\npages with a share between {MIDDLE[0]} and {MIDDLE[1]}: {len(middle)}")
        for share, name, number, text in middle:
            print(f"  {share:.2f} {name} p{number}: {' '.join(text.split())[:90]!r}")


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
