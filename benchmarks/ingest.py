"""Ingestion throughput: the app's pipeline against a plain pypdf + sentence-transformers baseline.

Usage::

    python benchmarks/ingest.py [--repeats 3] [--files N]

Over every PDF in ``../shared/testdata/pdf`` that opens without a password and has a text layer,
in one process, alternating in each round:

* app:      ``DocumentService.upload`` for each file (sniff, SHA-256, extract with page progress,
            token-aware chunking, embedding, LanceDB insert, incremental full-text index), into a
            fresh data dir each round;
* baseline: ``pypdf.PdfReader(...).pages[i].extract_text()`` for each file, then one
            ``SentenceTransformer.encode`` of the very same chunk texts the app produced.

Both use the same loaded all-MiniLM-L6-v2. It prints the medians of pages/s and chunks/s and
the app/baseline throughput ratio as a Markdown table; the README quotes it.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pypdf
from squad import OWNER, ROOT, services

from backend.documents import DocumentError, extract

PDFS = ROOT.parent / "shared" / "testdata" / "pdf"


def readable_pdfs() -> list[Path]:
    """PDFs that open without a password and have a text layer."""
    out = []
    for path in sorted(PDFS.glob("*.pdf")):
        try:
            extract(path.read_bytes(), path.name)
        except DocumentError:
            continue
        out.append(path)
    return out


def app_round(files: list[Path], embedder) -> tuple[float, int, int, list[str]]:
    """Upload every file into fresh services; returns seconds, pages, chunks and the chunk texts."""
    folder = Path(tempfile.mkdtemp(prefix="kvc-ingest-"))
    svc = services(folder / "data", embedder=embedder)
    try:
        start = time.perf_counter()
        rows = [svc.documents.upload(OWNER, path)[0] for path in files]
        seconds = time.perf_counter() - start
        texts = [t for r in rows for t in svc.store.document_chunks(OWNER, r.doc_id)]
        return seconds, sum(r.pages for r in rows), len(texts), texts
    finally:
        svc.close()
        shutil.rmtree(folder, ignore_errors=True)


def baseline_round(files: list[Path], texts: list[str], model) -> float:
    """pypdf extraction of every page plus one encode of ``texts``; returns seconds."""
    start = time.perf_counter()
    for path in files:
        for page in pypdf.PdfReader(io.BytesIO(path.read_bytes()), strict=False).pages:
            page.extract_text()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - start


def main() -> None:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", type=int, default=None, help="only the first N PDFs (a smoke run)")
    args = parser.parse_args()
    files = readable_pdfs()[: args.files]
    from backend.documents import Embedder

    embedder = Embedder("all-MiniLM-L6-v2")
    app_s, base_s = [], []
    pages = chunks = 0
    for _ in range(args.repeats):
        seconds, pages, chunks, texts = app_round(files, embedder)
        app_s.append(seconds)
        base_s.append(baseline_round(files, texts, embedder.model))
    app, base = statistics.median(app_s), statistics.median(base_s)
    print(f"{len(files)} PDFs, {pages} pages, {chunks} chunks; median of {args.repeats} rounds\n")
    print("| pipeline | seconds | pages/s | chunks/s |")
    print("|---|---:|---:|---:|")
    for name, s in (("baseline (pypdf + encode)", base), ("app (upload)", app)):
        print(f"| {name} | {s:.1f} | {pages / s:.1f} | {chunks / s:.1f} |")
    print(f"\napp throughput / baseline throughput: {base / app:.2f}x")


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
