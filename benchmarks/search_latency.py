"""Search latency: p50 and p95 of ``search_documents`` at 10k and 100k chunks.

Usage::

    python benchmarks/search_latency.py [--sizes 10000 100000] [--queries 200]

The SQuAD v1.1 dev articles are ingested once through the app's pipeline (about 2,000 real
chunks with real all-MiniLM-L6-v2 vectors). Each corpus size is then built in its own LanceDB by
copying those chunks under new document ids until it holds N chunks; each copy's vectors get
small Gaussian noise (sigma 0.01, re-normalised) so no two rows are identical. Embedding 100k
chunks for real would take hours on this machine and would not change how the search scales.

Each query is a distinct SQuAD question, so the query-embedding LRU cache never hits and the
time includes embedding the query, as a user's first search would. Two filters are timed: all
documents of the owner, and 5 selected documents. It prints a Markdown table; the README quotes it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from squad import OWNER, ingest, percentile, questions, services

from backend.documents import DocumentRow, DocumentService, Store


def build_corpus(folder: Path, chunks: list[dict], docs: list[dict], size: int, dim: int) -> Store:
    """A Store under ``folder`` with ``size`` chunks copied from ``chunks`` (see module doc)."""
    store = Store(folder, dim)
    rng = np.random.default_rng(0)
    n, copy = 0, 0
    while n < size:
        take = chunks[: size - n]
        vectors = np.stack([c["vector"] for c in take]).astype(np.float32)
        vectors += rng.normal(0, 0.01, vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [{**c, "doc_id": f"{c['doc_id']}-{copy}", "chunk_id": f"{c['chunk_id']}-{copy}", "vector": v}
                for c, v in zip(take, vectors)]
        store.chunks.add(rows)
        store.documents.add([DocumentRow(**{**d, "doc_id": f"{d['doc_id']}-{copy}"}) for d in docs])
        n += len(take)
        copy += 1
    store.chunks.create_fts_index("text", use_tantivy=False)
    return store


def main() -> None:
    """Build each corpus, time the queries, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    svc = services()
    tmp = Path(tempfile.mkdtemp(prefix="kvc-latency-"))
    try:
        ingest(svc)
        chunks = svc.store.chunks.to_arrow().to_pylist()
        docs = svc.store.documents.to_arrow().to_pylist()
        qs = [q.text for q in questions()]
        print(f"{len(chunks):,} real chunks from {len(docs)} SQuAD articles; {args.queries} distinct questions "
              "per cell, query embedding included\n")
        print("| chunks | filter | p50 ms | p95 ms |")
        print("|---:|---|---:|---:|")
        offset = 0
        for size in args.sizes:
            store = build_corpus(tmp / str(size), chunks, docs, size, svc.embedder.dim)
            documents = DocumentService(tmp / "uploads", store, svc.embedder,
                                        max_upload_bytes=1, chunk_tokens=200, overlap_tokens=40)
            all_ids = [d.doc_id for d in documents.list(OWNER)]
            for label, doc_ids in (("all documents", []), ("5 selected documents", all_ids[:5])):
                times = []
                for query in qs[offset: offset + args.queries]:
                    start = time.perf_counter()
                    documents.search(OWNER, query, doc_ids, 5)
                    times.append(time.perf_counter() - start)
                offset += args.queries
                print(f"| {store.count_chunks():,} | {label} ({len(doc_ids) or len(all_ids):,}) | "
                      f"{1000 * statistics.median(times):.1f} | {1000 * percentile(times, 0.95):.1f} |")
    finally:
        svc.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
