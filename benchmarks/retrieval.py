"""Retrieval quality on SQuAD v1.1 dev: answer hit@k for vector, full-text and hybrid search.

Usage::

    python benchmarks/retrieval.py [--limit N] [--articles N]

The 48 articles go through the app's own pipeline (extract -> paragraph-aligned chunks of at most
254 tokens -> all-MiniLM-L6-v2 -> LanceDB), one text document per article. For each of the 10,570
questions (or the first ``--limit``), every method retrieves its top-10 chunks from all 48
documents through ``Store.search`` (the code behind ``search_documents``); a question is a hit
at k when one of its gold answers occurs in one of the top-k chunks (case-insensitive, whitespace
normalised; the DPR "answer recall" of Karpukhin et al., 2020). Query embeddings are computed
in batches up front, as ``encode_query`` would return them.

It prints a Markdown table; the README quotes it.
"""

from __future__ import annotations

import argparse
import sys
import time

from squad import OWNER, ingest, questions, services

KS = (1, 3, 5, 10)
METHODS = ("vector", "fts", "hybrid")


def normalise(text: str) -> str:
    """Lower case, single spaces."""
    return " ".join(text.lower().split())


def main() -> None:
    """Ingest, search every question with each method, print hit@k."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--articles", type=int, default=None, help="only the first N of the 48 articles (a smoke run)")
    args = parser.parse_args()
    svc = services()
    try:
        start = time.perf_counter()
        doc_ids = ingest(svc, args.articles)
        ingest_s = time.perf_counter() - start
        qs = questions(args.articles)[: args.limit]
        start = time.perf_counter()
        vectors = svc.embedder.encode([q.text for q in qs])
        embed_s = time.perf_counter() - start
        hits = {m: dict.fromkeys(KS, 0) for m in METHODS}
        search_s = dict.fromkeys(METHODS, 0.0)
        for q, vector in zip(qs, vectors):
            answers = [normalise(a) for a in q.answers]
            for method in METHODS:
                t = time.perf_counter()
                found = svc.store.search(OWNER, q.text, vector, doc_ids, max(KS), method)
                search_s[method] += time.perf_counter() - t
                texts = [normalise(h.text) for h in found]
                first = next((i for i, t in enumerate(texts) if any(a in t for a in answers)), None)
                for k in KS:
                    hits[method][k] += first is not None and first < k
        n = len(qs)
        print(f"{len(doc_ids)} documents, {svc.store.count_chunks():,} chunks (ingested in {ingest_s:.0f} s), "
              f"{n:,} questions (embedded in {embed_s:.0f} s)\n")
        print("| method | " + " | ".join(f"hit@{k}" for k in KS) + " | mean search ms |")
        print("|---|" + "---:|" * (len(KS) + 1))
        for method in METHODS:
            row = " | ".join(f"{hits[method][k] / n:.4f}" for k in KS)
            print(f"| {method} | {row} | {1000 * search_s[method] / n:.1f} |")
    finally:
        svc.close()


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
