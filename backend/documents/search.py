"""Ranking chunks: LanceDB's full-text (BM25) and vector searches, run at once and fused by score, and the
approximate-nearest-neighbour (ANN) index the vector search uses once a library is large.

Fusion: each method's ``FUSION_DEPTH`` best rows over the same prefiltered rows, both lists min-max
normalised, then ``0.3 * vector + 0.7 * BM25``, a chunk missing from one list getting 0 there (the formula
of LanceDB's ``LinearCombinationReranker`` with ``normalize="score"``, computed here because LanceDB
normalises a one-row list to 0). Reciprocal-rank fusion (k=60) was below BM25 alone at hit@1 on SQuAD
(0.779 against 0.821); the weight was chosen on every fifth SQuAD dev question (``benchmarks/retrieval.py``).
The two searches run concurrently (LanceDB releases the GIL while it searches), so a hybrid search takes
about as long as the slower of the two.

ANN: below ``ANN_MIN_ROWS`` chunks the vector search is an exact flat scan. Past it, ``VectorIndex`` builds
LanceDB's ``IVF_HNSW_SQ`` index on the vector column (and scalar indexes on the filter columns) once, in the
background, and ``optimize()`` every 20 writes (``Store._index_text``) folds new rows into them (rows not yet
in them are scanned exactly: LanceDB searches them too). A query uses the index only when its filter leaves at least ``ANN_MIN_ROWS`` chunks: an IVF index searched
with a selective prefilter (five documents of a large library) probes partitions that hold few of their
chunks and can return fewer than k, while a flat scan of a few thousand rows is fast and exact. With the
index, ``ANN_NPROBES`` partitions are probed and ``ANN_REFINE_FACTOR`` times k candidates are re-ranked on
their full vectors. The threshold, the index type and both parameters were chosen by
``benchmarks/search_latency.py`` (recall@10 against the flat scan, latency; docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

log = logging.getLogger(__name__)

# Hybrid fusion: the vector score's weight (BM25 gets the rest) and how many candidates each method
# contributes before fusing. Chosen on SQuAD dev (every fifth question, 2,114): weight 0.2-0.4 and
# depth 30 all beat both single methods at hit@1/3/5/10; 0.5 and reciprocal-rank fusion did not at k=1.
HYBRID_VECTOR_WEIGHT = 0.3
FUSION_DEPTH = 30
SEARCH_METHODS = ("hybrid", "vector", "fts")

ANN_MIN_ROWS = 10_000  # chunks from which the ANN index pays: 31 against 42 ms p50 at 10k (benchmarks/search_latency.py)
ANN_INDEX_TYPE = "IVF_HNSW_SQ"
ANN_NPROBES = 40
ANN_REFINE_FACTOR = 5
SELECTED = ["doc_id", "idx", "page", "section", "text", "ocr"]

# Runs each hybrid search's vector half while the calling thread runs its BM25 half.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kvc-search")


def ranked(table, method: str, query: str, vector: np.ndarray, where: str, k: int, ann: bool = False) -> list[dict]:
    """One method's top-k rows of ``table``, best first, each with ``_relevance``.

    Args:
        table: the LanceDB chunks table.
        method: ``vector`` (cosine; ``_relevance`` is the similarity) or ``fts`` (BM25 score).
        query: the query text (``fts``).
        vector: float32, shape (dim,), L2-normalised (``vector``).
        where: SQL filter, applied before ranking (prefilter).
        k: rows wanted.
        ann: search through the vector index with ``ANN_NPROBES`` and ``ANN_REFINE_FACTOR``; False scans
            every filtered row exactly (``bypass_vector_index``).
    """
    if method == "vector":
        q, score = table.search(vector, query_type="vector").distance_type("cosine"), "_distance"
        q = q.nprobes(ANN_NPROBES).refine_factor(ANN_REFINE_FACTOR) if ann else q.bypass_vector_index()
    else:
        q, score = table.search(query, query_type="fts"), "_score"
    rows = q.where(where, prefilter=True).select([*SELECTED, score]).limit(k).to_list()
    for r in rows:
        r["_relevance"] = 1.0 - float(r[score]) if method == "vector" else float(r[score])
    return rows


def fused(table, query: str, vector: np.ndarray, where: str, k: int, ann: bool = False) -> list[dict]:
    """Hybrid top-k (see the module docstring): the vector and BM25 searches at once, each to
    ``FUSION_DEPTH`` rows, fused by normalised score. A method with one row, or with all scores equal,
    gives them 1 (LanceDB's own hybrid normalisation gives them 0, so a document where BM25 finds a
    single matching chunk lost exactly that chunk). Arguments as for ``ranked``."""
    depth = max(k, FUSION_DEPTH)
    by_vector = _POOL.submit(ranked, table, "vector", query, vector, where, depth, ann)
    by_text = ranked(table, "fts", query, vector, where, depth)
    fused_scores: dict[tuple[str, int], float] = {}
    rows: dict[tuple[str, int], dict] = {}
    for found, weight in ((by_vector.result(), HYBRID_VECTOR_WEIGHT), (by_text, 1.0 - HYBRID_VECTOR_WEIGHT)):
        if not found:
            continue
        lo, hi = min(r["_relevance"] for r in found), max(r["_relevance"] for r in found)
        for r in found:
            key = (r["doc_id"], r["idx"])
            fused_scores[key] = fused_scores.get(key, 0.0) + weight * ((r["_relevance"] - lo) / (hi - lo)
                                                                       if hi > lo else 1.0)
            rows.setdefault(key, r)
    best = sorted(fused_scores, key=lambda key: fused_scores[key], reverse=True)[:k]
    return [{**rows[key], "_relevance": fused_scores[key]} for key in best]


class VectorIndex:
    """The ANN index on a chunks table's ``vector`` column, with scalar indexes on the filter columns
    (``doc_id`` BTREE, ``owner`` BITMAP: a search of five documents among 100k chunks took 110 ms evaluating
    its filter row by row, 35 ms with them): built once the table holds ``min_rows`` chunks, in a background
    thread, so the upload that crosses the threshold does not wait for it.

    Args:
        min_rows: chunks past which the index is built and used.
    """

    def __init__(self, min_rows: int = ANN_MIN_ROWS):
        self.min_rows = min_rows
        self._known: dict[str, bool] = {}  # table name -> has the index (only this process builds one)
        self._building: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_build_s: float | None = None

    def ready(self, table) -> bool:
        """True when ``table`` has its vector index (looked up once per table, then remembered)."""
        if table.name not in self._known:
            self._known[table.name] = any(ix.columns == ["vector"] for ix in table.list_indices())
        return self._known[table.name]

    def use_for(self, table, rows: int) -> bool:
        """Whether a search whose filter leaves ``rows`` chunks should go through the index."""
        return rows >= self.min_rows and self.ready(table)

    def maybe_build(self, table, wait: bool = False) -> threading.Thread | None:
        """Start building the index when ``table`` has reached ``min_rows`` and has none (nor one being
        built); ``wait`` joins the build. Returns the building thread, or None when there is nothing to do.
        A failed build is logged and tried again after the next write."""
        with self._lock:
            if self._building is not None and self._building.is_alive():
                thread = self._building
            elif self.ready(table) or table.count_rows() < self.min_rows:
                return None
            else:
                thread = self._building = threading.Thread(target=self._build, args=(table,), daemon=True,
                                                           name="kvc-ann-index")
                thread.start()
        if wait:
            thread.join()
        return thread

    def _build(self, table) -> None:
        started = time.perf_counter()
        try:
            table.create_index(metric="cosine", index_type=ANN_INDEX_TYPE, vector_column_name="vector")
            table.create_scalar_index("doc_id", index_type="BTREE")  # the selected documents' filter
            table.create_scalar_index("owner", index_type="BITMAP")  # few owners, many rows each
        except Exception:  # an index is an optimisation: searches stay exact without it
            log.exception("building the vector index failed; searches scan every chunk until it is built")
            return
        self.last_build_s = time.perf_counter() - started
        self._known[table.name] = True
        log.info("built the %s vector index over %d chunks in %.1f s", ANN_INDEX_TYPE, table.count_rows(),
                 self.last_build_s)
