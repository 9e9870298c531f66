"""A library of 1,000 documents: how fast it goes in, and how the lists, search and deletes behave at that size.

Usage::

    python benchmarks/library.py [--documents 1000] [--delete 100]

The documents are SQuAD v1.1 dev paragraphs, each a small text file (one chunk), uploaded one after the
other through ``DocumentService.upload`` (extract, chunk, embed with all-MiniLM-L6-v2, LanceDB write and
full-text index update), the path every upload takes; then each is cached with the synthetic tiny model
(``models/make_synthetic.py``: the caches panel's entries, not answer quality). Timed, side by side:

* ingestion: documents per minute, and the upload time's median and p95;
* the document list: ``DocumentService.list`` plus the table's rows (``components.documents.table_rows``),
  and the filter box (``matching`` over the list) - what the Documents panel does on every refresh;
* the caches panel's rows (``components.caches.rows``) with one entry per document;
* ``search_documents`` over all documents and over 5 selected ones;
* deleting ``--delete`` documents one by one, as the Delete button does for a selection.

It prints a Markdown table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from squad import OWNER, SQUAD, percentile

from backend.config import Settings
from backend.services import build_services
from components.caches import rows as cache_rows
from components.documents import matching, table_rows

ROOT = Path(__file__).resolve().parent.parent


def paragraphs(n: int) -> list[tuple[str, str]]:
    """``(file name, text)`` of the first ``n`` SQuAD dev paragraphs."""
    out = []
    for art in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]:
        for i, p in enumerate(art["paragraphs"]):
            out.append((f"{art['title']}-{i:03d}.txt", p["context"]))
    return out[:n]


def ms(times: list[float]) -> str:
    """``p50 / p95`` in milliseconds."""
    return f"{1000 * statistics.median(times):.1f} / {1000 * percentile(times, 0.95):.1f}"


def timed(fn, repeat: int = 20) -> list[float]:
    """Seconds per call of ``fn()``, ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--delete", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "models"))
    from make_synthetic import write_model

    data = Path(tempfile.mkdtemp(prefix="kvc-library-"))
    model = write_model(data / "models" / "tiny.gguf", "tiny")
    svc = build_services(Settings(data_dir=data, models_dir=data / "models", model_path=model, auto_download=False,
                                  n_ctx=2048, kv_ram_budget_mb=0))
    rows: list[tuple[str, str]] = []
    try:
        folder = data / "files"
        folder.mkdir()
        uploads, caching = [], []
        started = time.perf_counter()
        for name, text in paragraphs(args.documents):
            path = folder / name
            path.write_text(text, encoding="utf-8")
            t = time.perf_counter()
            _row, _ = svc.documents.upload(OWNER, path)
            uploads.append(time.perf_counter() - t)
            if len(uploads) % 100 == 0:
                print(f"  {len(uploads)} uploaded, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        ingest_s = time.perf_counter() - started
        docs = svc.documents.list(OWNER)
        for d in docs:
            t = time.perf_counter()
            svc.primer.cache_documents(OWNER, [d.doc_id])
            caching.append(time.perf_counter() - t)
        n = len(docs)
        rows.append((f"upload {n:,} documents one by one", (f"{60 * n / ingest_s:,.0f} documents/min; "
                     f"each {ms(uploads)} ms")))
        rows.append(("cache each (synthetic tiny model)", f"{ms(caching)} ms"))
        rows.append((f"list {n:,} documents + table rows", f"{ms(timed(lambda: table_rows(svc, svc.documents.list(OWNER))))} ms"))
        listed = svc.documents.list(OWNER)
        rows.append((f"filter box over {n:,} names", f"{ms(timed(lambda: matching(listed, 'warsaw 01'), 200))} ms"))
        rows.append((f"caches panel rows ({len(svc.caches.list(OWNER)):,} entries)",
                     f"{ms(timed(lambda: cache_rows(svc, OWNER)))} ms"))
        rows.append(("caches filter box ('chunk 2')", f"{ms(timed(lambda: cache_rows(svc, OWNER, query='chunk 2')))} ms"))
        ids = [d.doc_id for d in listed]
        questions = [text.split(".")[0] for _, text in paragraphs(args.documents)[::10]][:50]
        svc.embedder.encode_query.cache_clear()
        for label, selected in (("all documents", []), ("5 selected", ids[:5])):
            times = []
            for q in questions:
                t = time.perf_counter()
                svc.documents.search(OWNER, q, selected, 5)
                times.append(time.perf_counter() - t)
            rows.append((f"search_documents, {label}", f"{ms(times)} ms"))
        deletes = []
        for doc_id in ids[: args.delete]:
            t = time.perf_counter()
            svc.documents.delete(OWNER, doc_id)
            deletes.append(time.perf_counter() - t)
        rows.append((f"delete {len(deletes)} documents (with their caches)", (f"{ms(deletes)} ms each, "
                     f"{sum(deletes):.1f} s in all")))
    finally:
        svc.close()
        shutil.rmtree(data, ignore_errors=True)
    print(f"\n{args.documents:,} SQuAD paragraphs as text documents, 2 cores; p50 / p95\n")
    print("| what | time |\n|---|---|")
    for what, figure in rows:
        print(f"| {what} | {figure} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
