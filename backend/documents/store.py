"""LanceDB storage: a ``documents`` table and a ``chunks`` table, and their search.

Search (``backend.documents.search``) runs LanceDB's own full-text (BM25) index and vector search over the
same prefiltered rows at once and fuses them by score; past ``ANN_MIN_ROWS`` chunks the vector search goes
through an ANN index. Every query filters by ``owner`` and the selected documents before ranking
(``prefilter=True``), never after. The full-text index is built once; ``optimize()`` every 20 writes folds
new rows into it and the vector index (unindexed rows are searched exactly meanwhile).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.documents.links import linked
from backend.documents.search import FUSION_DEPTH, SEARCH_METHODS, VectorIndex, fused, ranked
from backend.documents.tables import (
    DocumentRow,
    Hit,
    _in,
    chunk_model,
    document_model,
    purge_versions,
    sql_quote,
    table_names,
)
from backend.storage.disk import write_atomically

if TYPE_CHECKING:
    from lancedb.pydantic import LanceModel

log = logging.getLogger(__name__)

OPTIMIZE_EVERY_WRITES = 20  # chunk-table writes between two optimize() calls (see Store._index_text)
EMBEDDER_FILE = "embedder.json"  # in the LanceDB folder: which model, dimension and chunks table the index is


class Store:
    """The LanceDB database under ``data_dir/lancedb``.

    Args:
        uri: database folder.
        dim: embedding dimension of the chunks' ``vector`` column.
        model: the embedding model's name ("" to open the index whatever model built it, e.g. to read it);
            an index built with another model (or dimension) is kept as ``stale`` and a new chunks table
            opened, to be filled by ``DocumentService.reembed_all``.
    """

    def __init__(self, uri: str | Path, dim: int, model: str = ""):
        import lancedb

        self.db = lancedb.connect(str(uri))
        self.uri, self.dim, self.model = Path(uri), dim, model
        self._write_lock = threading.Lock()
        self._catalog_lock = threading.Lock()
        self._catalogs: dict[str, dict[str, tuple[str, int]]] = {}
        self._unoptimized: dict[str, int] = {}  # table name -> writes since its last optimize()
        self.vector_index = VectorIndex()
        self.documents = self._open("documents", document_model())
        self.stale = None  # the chunks table of another embedding model, kept until every document is re-embedded
        self.model_changed = False  # the index was built with another embedding model (other tables follow suit)
        recorded = self._recorded()
        table = recorded.get("table", "chunks")
        old_dim = self._dim_of(table)
        if old_dim in (None, dim) and (not model or recorded.get("model") in (None, "", model)):
            self._drop_unfinished(table)
            self.chunks = self._open(table, chunk_model(dim))
            if model and recorded.get("model") != model:
                self._record(table)
        else:  # another embedder wrote the index: a new table, filled by ``DocumentService.reembed_all``
            self.stale, self.model_changed = self.db.open_table(table), True
            log.warning("the index was built with %s (%s dimensions); documents will be embedded again with %s (%d)",
                        recorded.get("model", "another model"), old_dim, model or "this model", dim)
            self.chunks = self._fresh(f"chunks_{dim}_{int(time.time())}")
        self._migrate_columns()

    def _recorded(self) -> dict:
        """``embedder.json``: the embedding model, dimension and chunks table the index was built with ({} if none)."""
        try:
            return json.loads((self.uri / EMBEDDER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _record(self, table: str) -> None:
        """Write ``embedder.json`` for this model and table (whole, then renamed)."""
        write_atomically(self.uri / EMBEDDER_FILE,
                         json.dumps({"model": self.model, "dim": self.dim, "table": table}).encode())

    def _dim_of(self, table: str) -> int | None:
        """The vector width of an existing chunks table, or None when there is no such table."""
        if table not in table_names(self.db):
            return None
        return self.db.open_table(table).schema.field("vector").type.list_size

    def _drop_unfinished(self, live: str) -> None:
        """Drop the chunks tables of re-embeddings that never finished (every ``chunks_*`` but ``live``)."""
        for old in table_names(self.db):
            if old.startswith("chunks_") and old != live:
                log.info("dropping %s, left by a re-embedding that did not finish", old)
                self.db.drop_table(old)

    def _fresh(self, name: str):
        """A new, empty chunks table (after dropping unfinished ones)."""
        self._drop_unfinished(self._recorded().get("table", "chunks"))
        return self.db.create_table(name, schema=chunk_model(self.dim))

    def finish_reembedding(self) -> None:
        """Every document is in the new chunks table: record it as the index and drop the old one."""
        if self.stale is not None:
            self._record(self.chunks.name)
            self.db.drop_table(self.stale.name)
            self.stale = None

    def _migrate_columns(self) -> None:
        """Add the columns that tables written by older versions lack."""
        if "section" not in self.chunks.schema.names:  # tables written before chunks had sections
            self.chunks.add_columns({"section": "''"})
        if "ocr" not in self.chunks.schema.names:  # tables written before OCR
            self.chunks.add_columns({"ocr": "false"})
        if "ocr_pages" not in self.documents.schema.names:
            self.documents.add_columns({"ocr_pages": "CAST(0 AS BIGINT)"})

    def _open(self, name: str, schema: type[LanceModel]):
        """Open table ``name``, creating it with ``schema`` when missing."""
        return self.db.create_table(name, schema=schema, exist_ok=True)

    def _index_text(self) -> None:
        """Build the BM25 index on first use; afterwards, every ``OPTIMIZE_EVERY_WRITES`` writes, compact the
        table and fold the new rows into its indexes (``optimize()``). Rows written since are found all the
        same: LanceDB searches a table's unindexed rows exactly, full-text and vector alike. Optimising after
        every write rewrote the growing table each time (compaction), so an upload took 0.1 s at 100 documents
        and 0.7 s at 1,000 (``benchmarks/library.py``); LanceDB's own advice is to optimise after about 20
        modifications (``LanceTable.optimize``'s docstring)."""
        if not any(ix.columns == ["text"] for ix in self.chunks.list_indices()):
            from lancedb.index import FTS

            self.chunks.create_index("text", config=FTS(), replace=False)  # create_fts_index is deprecated
            return
        self._optimize_sometimes(self.chunks)

    def _optimize_sometimes(self, table) -> None:
        """``optimize()`` ``table`` on every ``OPTIMIZE_EVERY_WRITES``-th write to it: each write adds a file
        (a fragment), and a table of 1,000 one-row fragments took 330 ms to list (the documents table, which
        was never optimised) against a few ms compacted."""
        count = self._unoptimized.get(table.name, 0) + 1
        if count >= OPTIMIZE_EVERY_WRITES:
            table.optimize()
            count = 0
        self._unoptimized[table.name] = count

    # documents ---------------------------------------------------------------------------
    def add_document(self, row: DocumentRow, chunks: list[dict]) -> None:
        """Insert a document and its chunks, then refresh the full-text index.

        Args:
            row: the document row.
            chunks: dicts with the chunks schema's fields; ``vector`` float32, shape (dim,).
        """
        self._write(row, chunks, replace=False)

    def replace_document(self, row: DocumentRow, chunks: list[dict]) -> None:
        """Swap a document's row and chunks for new ones (re-indexing), keeping its id.

        Args:
            row: the new row (same ``owner`` and ``doc_id``).
            chunks: the new chunks, as for ``add_document``.
        """
        self._write(row, chunks, replace=True)

    def _write(self, row: DocumentRow, chunks: list[dict], *, replace: bool) -> None:
        """Write a document's chunks, then its row (first deleting the old chunks when ``replace``).

        The row is the commit: each LanceDB write is atomic, and the row goes last, so a crash in
        between leaves chunks without a row (swept at start) or, when re-indexing, the old row with
        too few chunks (re-indexed at start; ``backend.documents.recovery``), never a lost document.
        """
        with self._write_lock:
            if replace:
                self.chunks.delete(f"owner = {sql_quote(row.owner)} AND doc_id = {sql_quote(row.doc_id)}")
            if chunks:
                self.chunks.add(chunks)
                self._index_text()
                self.vector_index.maybe_build(self.chunks)
            if replace:
                self.documents.merge_insert("doc_id").when_matched_update_all().when_not_matched_insert_all(
                ).execute([row.model_dump()])
            else:
                self.documents.add([row.model_dump()])
            self._changed()
            self._optimize_sometimes(self.documents)

    def list_documents(self, owner: str) -> list[DocumentRow]:
        """All documents of ``owner``, oldest first."""
        rows = self.documents.search().where(f"owner = {sql_quote(owner)}").limit(None).to_list()
        return sorted((DocumentRow(**{k: r[k] for k in DocumentRow.model_fields}) for r in rows),
                      key=lambda d: d.uploaded_at)

    def get_document(self, owner: str, doc_id: str) -> DocumentRow | None:
        """The document with this id, or None."""
        rows = (self.documents.search().where(f"owner = {sql_quote(owner)} AND doc_id = {sql_quote(doc_id)}")
                .limit(1).to_list())
        return DocumentRow(**{k: rows[0][k] for k in DocumentRow.model_fields}) if rows else None

    def find_by_sha256(self, owner: str, sha256: str) -> DocumentRow | None:
        """The document of ``owner`` whose file has this SHA-256, or None."""
        rows = (self.documents.search().where(f"owner = {sql_quote(owner)} AND sha256 = {sql_quote(sha256)}")
                .limit(1).to_list())
        return DocumentRow(**{k: rows[0][k] for k in DocumentRow.model_fields}) if rows else None

    def delete_document(self, owner: str, doc_id: str) -> None:
        """Delete a document's row, then its chunks (a crash in between leaves chunks that the start-up
        check sweeps, never a listed document without chunks)."""
        cond = f"owner = {sql_quote(owner)} AND doc_id = {sql_quote(doc_id)}"
        with self._write_lock:
            self.documents.delete(cond)
            self._changed()
            self.chunks.delete(cond)
            self._optimize_sometimes(self.documents)
            self._optimize_sometimes(self.chunks)

    def purge(self) -> str:
        """Compact the documents and chunks tables and delete their older versions (``purge_versions``), so a
        deleted document's rows leave no bytes on the disk; runs under the write lock.

        Returns:
            What was removed, for the log.
        """
        with self._write_lock:
            done = [purge_versions(t) for t in (self.documents, self.chunks, self.stale) if t is not None]
            self._reconnect()
        self.vector_index = VectorIndex()  # rebuilt from the compacted table on the next search that needs it
        return "; ".join(done)

    def _reconnect(self) -> None:
        """Open the tables again on a new connection (the caller holds the write lock).

        LanceDB's session caches every index it opens and keeps its files open: each ``optimize()`` makes a new
        full-text index generation, and the old ones stayed open after the clean-up deleted them, so descriptors
        added up (36 after 22 minutes of ``benchmarks/soak.py``) and the deleted files' bytes stayed on the disk.
        A new connection starts with empty caches; the old one closes with the last search still using it.
        ``MemoryIndex.purge`` opens its table on the new connection after this.
        """
        import lancedb

        self.db = lancedb.connect(str(self.uri))
        self.documents = self.db.open_table(self.documents.name)
        self.chunks = self.db.open_table(self.chunks.name)
        if self.stale is not None:
            self.stale = self.db.open_table(self.stale.name)

    def all_documents(self) -> list[DocumentRow]:
        """Every owner's documents (for the start-up check)."""
        return [DocumentRow(**{k: r[k] for k in DocumentRow.model_fields})
                for r in self.documents.search().limit(None).to_list()]

    def chunk_counts(self) -> dict[str, int]:
        """How many chunk rows each ``doc_id`` has, over every owner."""
        ids = self.chunks.search().select(["doc_id"]).limit(None).to_arrow().column("doc_id").to_pylist()
        return dict(Counter(ids))

    def delete_chunks(self, doc_ids: set[str]) -> None:
        """Delete every chunk of these documents (chunks whose document row is gone)."""
        if doc_ids:
            with self._write_lock:
                self.chunks.delete(f"doc_id IN ({', '.join(sql_quote(d) for d in sorted(doc_ids))})")
                self._index_text()

    def document_chunks(self, owner: str, doc_id: str) -> list[str]:
        """The texts of a document's chunks in order."""
        return [h.text for h in self.chunk_hits(owner, doc_id)]

    def chunk_hits(self, owner: str, doc_id: str) -> list[Hit]:
        """A document's chunks in order, as search hits (score 0), with its name; [] when it has none."""
        rows = (self.chunks.search().where(f"owner = {sql_quote(owner)} AND doc_id = {sql_quote(doc_id)}")
                .select(["idx", "page", "section", "text", "ocr"]).limit(None).to_list())
        name = self.names(owner, {doc_id}).get(doc_id, doc_id)
        return [Hit(doc_id, name, r["page"], r["idx"], 0.0, r["text"], r.get("section") or "", bool(r.get("ocr")))
                for r in sorted(rows, key=lambda r: r["idx"])]

    def count_chunks(self) -> int:
        """Number of chunk rows of all owners."""
        return self.chunks.count_rows()

    # search ------------------------------------------------------------------------------
    def search(self, owner: str, query: str, query_vector: np.ndarray, doc_ids: list[str] | None, k: int,
               method: str = "hybrid") -> list[Hit]:
        """Top-k chunks of the given documents.

        Args:
            owner: whose chunks to search.
            query: the question text, for BM25.
            query_vector: float32, shape (dim,), L2-normalized (unused by ``fts``).
            doc_ids: documents to search; None searches all of ``owner``'s documents, an empty
                list searches nothing.
            k: top-k chunks to return.
            method: ``hybrid`` (BM25 + vector, score-fused, then ``links.linked``), ``vector`` or ``fts``.

        Returns:
            Up to ``k`` hits, best first, all from ``doc_ids``.

        Raises:
            ValueError: unknown ``method``.
        """
        if method not in SEARCH_METHODS:
            raise ValueError(f"method must be one of {SEARCH_METHODS}")
        if doc_ids == [] or k < 1 or self.chunks.count_rows() == 0:
            return []
        where = f"owner = {sql_quote(owner)}"
        if doc_ids is not None:
            where += f" AND doc_id IN {_in(doc_ids)}"
        vector = query_vector.astype(np.float32)
        ann = self.vector_index.use_for(self.chunks, self._rows_in(owner, doc_ids))
        hybrid = method == "hybrid"  # fused to the full depth, then re-ranked by the documents named (links.py)
        rows = (fused(self.chunks, query, vector, where, max(k, FUSION_DEPTH), ann) if hybrid
                else ranked(self.chunks, method, query, vector, where, k, ann))
        names = self.names(owner, {r["doc_id"] for r in rows})  # one look-up for the re-ranking and the hits
        rows = linked(rows, names, query, k) if hybrid else rows
        return [Hit(r["doc_id"], names.get(r["doc_id"], r["doc_id"]), r["page"], r["idx"], r["_relevance"],
                    r["text"], r.get("section") or "", bool(r.get("ocr"))) for r in rows]

    def _rows_in(self, owner: str, doc_ids: list[str] | None) -> int:
        """Chunks a search of these documents (None: all of ``owner``'s) filters down to, from ``catalog``
        (0 while the table has no ANN index: no need to count then)."""
        if not self.vector_index.ready(self.chunks):
            return 0
        catalog = self.catalog(owner)
        return sum(catalog[d][1] for d in (catalog if doc_ids is None else doc_ids) if d in catalog)

    def names(self, owner: str, doc_ids: set[str]) -> dict[str, str]:
        """``{doc_id: name}`` for those of ``doc_ids`` that ``owner`` has (from ``catalog``)."""
        catalog = self.catalog(owner) if doc_ids else {}
        return {d: catalog[d][0] for d in doc_ids if d in catalog}

    def catalog(self, owner: str) -> dict[str, tuple[str, int]]:
        """``{doc_id: (name, n_chunks)}`` of ``owner``'s documents: read once, then kept until the next write
        (every search looks names and chunk counts up here; reading the documents table each time cost 20 ms
        at 2,000 documents)."""
        with self._catalog_lock:
            found = self._catalogs.get(owner)
        if found is None:
            rows = (self.documents.search().where(f"owner = {sql_quote(owner)}").select(["doc_id", "name", "n_chunks"])
                    .limit(None).to_arrow().to_pylist())
            found = {r["doc_id"]: (r["name"], r["n_chunks"]) for r in rows}
            with self._catalog_lock:
                self._catalogs[owner] = found
        return found

    def _changed(self) -> None:
        """Forget the cached catalogues (after any write to the documents table)."""
        with self._catalog_lock:
            self._catalogs.clear()
