"""The LanceDB tables' schemas and rows (documents, chunks, search hits), and small helpers every table here shares:
listing tables, quoting SQL filter values, and purging old versions so deleted rows leave no bytes behind."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from lancedb.pydantic import LanceModel

log = logging.getLogger(__name__)


def table_names(db) -> list[str]:
    """Every table of a LanceDB connection, page by page (``list_tables``; ``table_names()`` is deprecated).

    Args:
        db: a ``lancedb`` connection.

    Returns:
        The table names.
    """
    names, token = [], None
    while True:
        page = db.list_tables(page_token=token)
        names += list(page.tables)
        token = page.page_token
        if not token:
            return names

class DocumentRow(BaseModel):
    """One uploaded document (no text; the file lives under ``uploads/``).

    ``size_bytes`` is the upload's size; ``tokens`` its length in LLM tokens when a model
    was loaded at upload time, else in embedding-model tokens; ``uploaded_at`` is Unix seconds;
    ``ocr_pages`` counts the pages whose text was read by OCR.
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
    ocr_pages: int = 0


def document_model() -> type[LanceModel]:
    """The documents table's LanceDB schema: ``DocumentRow``'s fields. Built on demand, like every LanceDB
    schema here, so that importing this module does not import LanceDB (about 3.5 s on 2 cores: the app serves
    its first screen without it)."""
    from lancedb.pydantic import LanceModel

    class DocumentTable(DocumentRow, LanceModel):
        pass

    return DocumentTable


def chunk_model(dim: int) -> type[LanceModel]:
    """Build the chunks schema for embeddings of ``dim`` float32 values."""
    from lancedb.pydantic import LanceModel, Vector

    class ChunkRow(LanceModel):
        chunk_id: str
        doc_id: str
        owner: str
        idx: int
        page: int
        section: str
        text: str
        vector: Vector(dim)  # type: ignore[valid-type]
        ocr: bool = False

    return ChunkRow


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk and its relevance score (higher is better).

    ``score`` is the fused score (0..1) for hybrid search, cosine similarity for vector search and
    BM25 for full-text search; ``section`` is the heading path, ``""`` when the file has none;
    ``ocr`` says the chunk's page was read by OCR.
    """

    doc_id: str
    name: str
    page: int
    idx: int
    score: float
    text: str
    section: str = ""
    ocr: bool = False


def sql_quote(value: str) -> str:
    """Quote a string for a LanceDB SQL filter."""
    return "'" + value.replace("'", "''") + "'"


def _in(values) -> str:
    """A quoted SQL ``IN`` list: ``('a', 'b')``."""
    return "(" + ", ".join(sql_quote(v) for v in values) + ")"


def purge_versions(table) -> str:
    """Compact a table and delete every older version of it, so that rows deleted from it are gone from the disk
    (LanceDB keeps each write's version, and a delete only marks rows in a deletion file; compaction rewrites the
    data files without them, and the clean-up deletes the files no version left refers to). The caller holds the
    table's write lock: a reader still on an older version would fail (LanceDB's own warning for
    ``cleanup_older_than=0``).

    Args:
        table: a LanceDB table.

    Returns:
        What was removed, in words (for the log).
    """
    import warnings

    with warnings.catch_warnings():  # the warning about concurrent readers: the caller holds the write lock
        warnings.simplefilter("ignore", UserWarning)
        stats = table.optimize(cleanup_older_than=timedelta(0))
    removed = getattr(getattr(stats, "prune", None), "old_versions", None)
    return f"{table.name}: {removed if removed is not None else 'old'} versions removed"
