"""LanceDB storage: a ``documents`` table and a ``chunks`` table, with hybrid search.

Search runs LanceDB's own full-text (BM25) index and vector search over the same
prefiltered rows and fuses the two rankings with LanceDB's reciprocal-rank-fusion reranker
(Cormack et al., 2009, k=60). Every query filters by ``owner`` first.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import lancedb
import numpy as np
from lancedb.pydantic import LanceModel, Vector
from lancedb.rerankers import RRFReranker

log = logging.getLogger(__name__)


class DocumentRow(LanceModel):
    """One uploaded document (no text; the file lives under ``uploads/``).

    ``size_bytes`` is the upload's size; ``tokens`` its length in LLM tokens when a model
    was loaded at upload time, else in embedding-model tokens; ``uploaded_at`` is Unix seconds.
    """

    doc_id: str
    owner: str
    name: str
    kind: str
    sha256: str
    path: str
    pages: int
    chars: int
    tokens: int
    n_chunks: int
    size_bytes: int
    uploaded_at: float


def chunk_model(dim: int) -> type[LanceModel]:
    """Build the chunks schema for embeddings of ``dim`` float32 values."""

    class ChunkRow(LanceModel):
        chunk_id: str
        doc_id: str
        owner: str
        idx: int
        page: int
        text: str
        vector: Vector(dim)  # type: ignore[valid-type]

    return ChunkRow


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk and its fused relevance score (higher is better)."""

    doc_id: str
    name: str
    page: int
    idx: int
    score: float
    text: str


def _quote(value: str) -> str:
    """Quote a string for a LanceDB SQL filter."""
    return "'" + value.replace("'", "''") + "'"


class Store:
    """The LanceDB database under ``data_dir/lancedb``.

    Args:
        uri: database folder (or any LanceDB URI).
        dim: embedding dimension of the chunks' ``vector`` column.
    """

    def __init__(self, uri: str | Path, dim: int):
        self.db = lancedb.connect(str(uri))
        self.dim = dim
        self._write_lock = threading.Lock()
        self.documents = self._open("documents", DocumentRow)
        self.chunks = self._open("chunks", chunk_model(dim))
        self.reranker = RRFReranker()

    def _open(self, name: str, schema: type[LanceModel]):
        """Open table ``name``, creating it with ``schema`` when missing."""
        return self.db.create_table(name, schema=schema, exist_ok=True)

    # documents ---------------------------------------------------------------------------
    def add_document(self, row: DocumentRow, chunks: list[dict]) -> None:
        """Insert a document and its chunks, then refresh the full-text index.

        Args:
            row: the document row.
            chunks: dicts with the chunks schema's fields; ``vector`` float32, shape (dim,).
        """
        with self._write_lock:
            if chunks:
                self.chunks.add(chunks)
                self.chunks.create_fts_index("text", replace=True, use_tantivy=False)
            self.documents.add([row])

    def list_documents(self, owner: str) -> list[DocumentRow]:
        """All documents of ``owner``, oldest first."""
        rows = self.documents.search().where(f"owner = {_quote(owner)}").limit(None).to_list()
        return sorted((DocumentRow(**{k: r[k] for k in DocumentRow.model_fields}) for r in rows),
                      key=lambda d: d.uploaded_at)

    def get_document(self, owner: str, doc_id: str) -> DocumentRow | None:
        """The document with this id, or None."""
        rows = (self.documents.search().where(f"owner = {_quote(owner)} AND doc_id = {_quote(doc_id)}")
                .limit(1).to_list())
        return DocumentRow(**{k: rows[0][k] for k in DocumentRow.model_fields}) if rows else None

    def find_by_sha256(self, owner: str, sha256: str) -> DocumentRow | None:
        """The document of ``owner`` whose file has this SHA-256, or None."""
        rows = (self.documents.search().where(f"owner = {_quote(owner)} AND sha256 = {_quote(sha256)}")
                .limit(1).to_list())
        return DocumentRow(**{k: rows[0][k] for k in DocumentRow.model_fields}) if rows else None

    def delete_document(self, owner: str, doc_id: str) -> None:
        """Delete a document's row and chunks."""
        cond = f"owner = {_quote(owner)} AND doc_id = {_quote(doc_id)}"
        with self._write_lock:
            self.chunks.delete(cond)
            self.documents.delete(cond)

    def document_chunks(self, owner: str, doc_id: str) -> list[str]:
        """The texts of a document's chunks in order."""
        rows = (self.chunks.search().where(f"owner = {_quote(owner)} AND doc_id = {_quote(doc_id)}")
                .select(["idx", "text"]).limit(None).to_list())
        return [r["text"] for r in sorted(rows, key=lambda r: r["idx"])]

    # search ------------------------------------------------------------------------------
    def search(self, owner: str, query: str, query_vector: np.ndarray, doc_ids: list[str], k: int) -> list[Hit]:
        """Hybrid search over the chunks of the given documents.

        Args:
            owner: whose chunks to search.
            query: the question text, for BM25.
            query_vector: float32, shape (dim,), L2-normalized.
            doc_ids: documents to search; an empty list searches nothing.
            k: top-k chunks to return.

        Returns:
            Up to ``k`` hits, best first.
        """
        if not doc_ids or self.chunks.count_rows() == 0:
            return []
        where = f"owner = {_quote(owner)} AND doc_id IN ({', '.join(_quote(d) for d in doc_ids)})"
        rows = (self.chunks.search(query_type="hybrid")
                .vector(query_vector.astype(np.float32))
                .text(query)
                .where(where, prefilter=True)
                .rerank(self.reranker)
                .limit(k)
                .to_list())
        names = {d.doc_id: d.name for d in self.list_documents(owner)}
        return [Hit(r["doc_id"], names.get(r["doc_id"], r["doc_id"]), r["page"], r["idx"],
                    float(r.get("_relevance_score", 0.0)), r["text"]) for r in rows]
