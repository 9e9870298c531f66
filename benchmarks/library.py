"""A library of 1,000 documents: how fast it goes in, and how the lists, search and deletes behave at that size.

Usage::

    python benchmarks/library.py [--documents 1000] [--delete 100] [--browser]

The documents are SQuAD v1.1 dev paragraphs, each a small text file (one chunk), uploaded one after the
other through ``DocumentService.upload`` (extract, chunk, embed with all-MiniLM-L6-v2, LanceDB write and
full-text index update), the path every upload takes; then each is cached with the synthetic tiny model
(``models/make_synthetic.py``: the caches panel's entries, not answer quality). Timed, side by side:

* ingestion: documents per minute, and the upload time's median and p95;
* the document list: ``DocumentService.list`` plus the table's rows (``components.documents.table_rows``),
  and the filter box (``matching`` over the list) - what the Documents panel does on every refresh;
* the caches panel's rows (``components.caches.rows``) with one entry per document;
* ``search_documents`` over all documents and over 5 selected ones;
* with ``--browser``, the same panels in Debian's Chromium (the app served on these services): the page
  load until the Document manager's table shows its first row, opening the KV caches panel until its table
  shows, and each filter box (documents, caches) from typing a name until the panel says "k of N shown", and
  from clearing it until all N are back, 5 times each (Playwright's clock: the server's answer included);
* deleting ``--delete`` documents one by one, as the Delete button does for a selection.

It prints a Markdown table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from squad import SQUAD, percentile

from backend.config import Settings
from backend.services import build_services
from components.caches import rows as cache_rows
from components.documents import matching, table_rows

ROOT = Path(__file__).resolve().parent.parent
OWNER = "local"  # the app's user without sign-in, so the --browser pass sees these documents


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


def browser_times(svc, repeats: int = 5) -> list[tuple[str, str]]:
    """The panels as a user meets them in Chromium (see the module docstring); rows for the table."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from browsing import CHROMIUM, FLAGS

    from app import build_app, look
    from components.documents import SHOWN_ROWS

    docs, caches = svc.documents.list(OWNER), svc.caches.list(OWNER)
    name = docs[len(docs) // 2].name
    first_row = docs[max(0, len(docs) - SHOWN_ROWS)].name  # the table draws the newest SHOWN_ROWS, oldest first
    demo = build_app(svc.settings, svc)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", **look())
    times: dict[str, list[float]] = {}

    def clock(what: str, act, done) -> None:
        start = time.perf_counter()
        act()
        done()
        times.setdefault(what, []).append(time.perf_counter() - start)

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            for _ in range(repeats):
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                clock("page load until the document table shows", lambda p=page: p.goto(url),
                      lambda p=page: p.get_by_role("gridcell", name=first_row).first.wait_for(timeout=120_000))
                for box, label, total in (("Filter documents by name", "documents", len(docs)),
                                          ("Filter caches by document", "caches", len(caches))):
                    field = page.get_by_placeholder(box)
                    if label == "caches":  # its table renders when the accordion opens
                        clock(f"opening the caches panel until its table shows ({total:,} rows)",
                              lambda p=page: p.get_by_text("KV caches", exact=True).click(),
                              lambda p=page: p.get_by_role("gridcell", name=caches[0].label).first.wait_for(
                                  timeout=60_000))
                    shown = page.get_by_text(re.compile(rf"\([0-9]+ of {total:,} shown\)")).first  # the entries it matches
                    clock(f"{label} filter: typing a name until its entries of {total:,} show", lambda f=field: f.fill(name),
                          lambda s=shown: s.wait_for(timeout=60_000))
                    clock(f"{label} filter: clearing it until the whole list is back", lambda f=field: f.fill(""),
                          lambda s=shown: s.wait_for(state="detached", timeout=60_000))
                page.close()
            browser.close()
    finally:
        demo.close()
    return [(f"browser: {what}", f"{ms(t)} ms") for what, t in times.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--delete", type=int, default=100)
    parser.add_argument("--browser", action="store_true", help="also time the panels in Chromium")
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
        if args.browser:
            rows.extend(browser_times(svc))
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
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
