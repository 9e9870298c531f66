"""Search latency at 10k to 1M chunks: ``search_documents`` end to end, exact (flat scan) and through the
ANN index side by side, with the index's recall@10 against the flat scan and its build time.

Usage::

    python benchmarks/search_latency.py [--sizes 10000 30000 100000 1000000] [--queries 200] [--articles N]

The SQuAD v1.1 dev articles are ingested once through the app's pipeline (about 2,000 real chunks with
real all-MiniLM-L6-v2 vectors). Each corpus size is then built in its own LanceDB from those chunks under
new document ids: row r keeps chunk r's text (cycling) and gets a vector between it and another random
chunk, ``normalise(w * v_r + (1 - w) * v_j)`` with w uniform in [0.5, 0.8], so no two vectors are alike
and neighbourhoods look like a library's (jittered copies of one vector would be near-duplicates no ANN
index tells apart). Embedding 1M chunks for real would take days on this machine and would not change
how the search scales.

For each size: the same 200 distinct SQuAD questions (query embedding included: the LRU cache is
cleared, as for a user's first search) are timed with the exact vector search, then the ANN index is
built (timed) and they are timed again through it. Two filters: all documents of the owner, and 5
selected documents (a filter that leaves few chunks always scans them exactly, see
``backend.documents.search``). recall@10 compares the vector search's top 10 through the index with the
exact top 10. It prints a Markdown table; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lancedb.index import FTS
from squad import OWNER, ingest, percentile, questions, services

from backend.documents import DocumentRow, DocumentService, Store
from backend.documents.search import ANN_INDEX_TYPE, ranked

BATCH_ROWS = 20_000


def build_corpus(folder: Path, chunks: list[dict], docs: list[dict], size: int, dim: int) -> Store:
    """A Store under ``folder`` with ``size`` chunks made from ``chunks`` (see the module docstring), its
    full-text index built, no vector index."""
    store = Store(folder, dim)
    store.vector_index.min_rows = 1 << 62  # built by the benchmark, after the flat timings
    rng = np.random.default_rng(0)
    base = np.stack([c["vector"] for c in chunks]).astype(np.float32)
    for start in range(0, size, BATCH_ROWS):
        rows_at = np.arange(start, min(size, start + BATCH_ROWS))
        src = rows_at % len(chunks)
        other = rng.integers(0, len(chunks), len(rows_at))
        w = rng.uniform(0.5, 0.8, (len(rows_at), 1)).astype(np.float32)
        vectors = w * base[src] + (1 - w) * base[other]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for r, s, v in zip(rows_at, src, vectors):
            c, copy = chunks[s], r // len(chunks)
            rows.append({**c, "doc_id": f"{c['doc_id']}-{copy}", "chunk_id": f"{c['chunk_id']}-{copy}", "vector": v})
        store.chunks.add(rows)
    copies = (size + len(chunks) - 1) // len(chunks)
    counts = {}
    for r in range(size):
        key = (chunks[r % len(chunks)]["doc_id"], r // len(chunks))
        counts[key] = counts.get(key, 0) + 1
    store.documents.add([DocumentRow(**{**d, "doc_id": f"{d['doc_id']}-{copy}", "n_chunks": counts[(d["doc_id"], copy)]}).model_dump()
                         for copy in range(copies) for d in docs if (d["doc_id"], copy) in counts])
    store.chunks.create_index("text", config=FTS(), replace=False)
    return store


def time_searches(documents: DocumentService, qs: list[str], doc_ids: list[str]) -> list[float]:
    """Seconds per ``search`` call, query embedding included (the LRU cache cleared first)."""
    documents.embedder.encode_query.cache_clear()
    times = []
    for query in qs:
        start = time.perf_counter()
        documents.search(OWNER, query, doc_ids, 5)
        times.append(time.perf_counter() - start)
    return times


def recall_at_10(store: Store, vectors: list[np.ndarray]) -> float:
    """Mean share of the exact vector top 10 that the ANN search also returns in its top 10."""
    where = f"owner = '{OWNER}'"
    shares = []
    for v in vectors:
        exact = {(r["doc_id"], r["idx"]) for r in ranked(store.chunks, "vector", "", v, where, 10, ann=False)}
        approx = {(r["doc_id"], r["idx"]) for r in ranked(store.chunks, "vector", "", v, where, 10, ann=True)}
        shares.append(len(exact & approx) / max(len(exact), 1))
    return float(np.mean(shares))


def main() -> None:
    """Build each corpus, time the queries exact and through the index, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--articles", type=int, default=None, help="the corpus from the first N SQuAD articles only")
    args = parser.parse_args()
    svc = services()
    tmp = Path(tempfile.mkdtemp(prefix="kvc-latency-"))
    try:
        ingest(svc, args.articles)
        chunks = svc.store.chunks.to_arrow().to_pylist()
        docs = svc.store.documents.to_arrow().to_pylist()
        qs = [q.text for q in questions(args.articles)][: args.queries]
        vectors = [svc.embedder.encode_query(q) for q in qs]
        print(f"{len(chunks):,} real chunks from {len(docs)} SQuAD articles; {len(qs)} distinct questions per cell, "
              f"query embedding included; top-5 hybrid; ANN index {ANN_INDEX_TYPE}\n")
        print("| chunks | filter | exact p50 ms | exact p95 ms | ANN p50 ms | ANN p95 ms | recall@10 | index build s |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for size in args.sizes:
            started = time.perf_counter()
            store = build_corpus(tmp / str(size), chunks, docs, size, svc.embedder.dim)
            built = time.perf_counter() - started
            documents = DocumentService(tmp / "uploads", store, svc.embedder,
                                        max_upload_bytes=1, chunk_tokens=200, overlap_tokens=40)
            all_ids = [d.doc_id for d in documents.list(OWNER)]
            filters = (("all documents", []), ("5 selected documents", all_ids[:5]))
            exact = {label: time_searches(documents, qs, ids) for label, ids in filters}
            store.vector_index.min_rows = 0
            store.vector_index.maybe_build(store.chunks, wait=True)
            store.vector_index.min_rows = size  # at every size, so the table shows where the index starts to pay
            ann = {label: time_searches(documents, qs, ids) for label, ids in filters}
            recall = recall_at_10(store, vectors)
            for label, ids in filters:
                e, a = exact[label], ann[label]
                index_used = not ids
                print(f"| {store.count_chunks():,} | {label} ({len(ids) or len(all_ids):,}) | "
                      f"{1000 * statistics.median(e):.1f} | {1000 * percentile(e, 0.95):.1f} | "
                      f"{1000 * statistics.median(a):.1f}{'' if index_used else ' (exact)'} | "
                      f"{1000 * percentile(a, 0.95):.1f} | {f'{recall:.3f}' if index_used else '—'} | "
                      f"{f'{store.vector_index.last_build_s:.1f}' if index_used else '—'} |", flush=True)
            print(f"<!-- corpus of {size:,} built in {built:.0f} s -->", flush=True)
            shutil.rmtree(tmp / str(size), ignore_errors=True)
    finally:
        svc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
