"""Long-term memory across sessions: each user's questions, embedded and kept in a LanceDB table,
recalled into the user turn of another session when "remember across sessions" is on.

Table ``memory`` (same database as the documents): ``owner``, ``session_id``, ``text``,
``created_at`` (Unix seconds), ``vector`` (float32, the embedder's dimension). Every read is
prefiltered by owner; deleting a session deletes its rows.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.documents import DocumentService, Embedder, LoadError, Once, purge_versions, sql_quote, table_names

if TYPE_CHECKING:
    from lancedb.pydantic import LanceModel

log = logging.getLogger(__name__)


def memory_model(dim: int) -> type[LanceModel]:
    """The LanceDB schema of the memory table for embeddings of ``dim`` floats (LanceDB imported here, when the
    table is first opened)."""
    from lancedb.pydantic import LanceModel, Vector

    class MemoryRow(LanceModel):
        owner: str
        session_id: str
        text: str
        created_at: float
        vector: Vector(dim)  # type: ignore[valid-type]

    return MemoryRow


@dataclass(frozen=True)
class Memory:
    """A recalled message: its text, the session it came from, when, and its cosine distance."""

    text: str
    session_id: str
    created_at: float
    distance: float


class MemoryIndex:
    """The user's past questions, searchable by meaning.

    The table opens on first use (after the documents' index, in the same database). Questions are embedded and
    added by one writer thread, in order, so a turn never waits for the embedding model (still loading in the
    first seconds after a start); ``recall`` waits for the writes asked before it.

    Args:
        documents: the documents, whose LanceDB database holds the table.
        embedder: the embedding model; a table another model wrote is embedded again with it.
        max_distance: recalled messages must be at most this cosine distance from the question
            (0 = identical, 2 = opposite); farther ones are not relevant enough to repeat.
    """

    def __init__(self, documents: DocumentService, embedder: Embedder, max_distance: float = 0.8):
        self.documents, self.embedder, self.max_distance = documents, embedder, max_distance
        self._lock = threading.Lock()
        self._table = Once(self._open, "the memory index")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memory")

    def _open(self):
        """Open (or create) the ``memory`` table; a table of another model's vectors is embedded again."""
        store, embedder = self.documents.store, self.embedder
        rows = []
        if "memory" in table_names(store.db):
            old = store.db.open_table("memory")
            if store.model_changed or old.schema.field("vector").type.list_size != embedder.dim:
                rows = old.search().select(["owner", "session_id", "text", "created_at"]).limit(None).to_list()
                store.db.drop_table("memory")  # another model's vectors: the texts are embedded again below
        table = store.db.create_table("memory", schema=memory_model(embedder.dim), exist_ok=True)
        if rows:
            vectors = embedder.encode([r["text"] for r in rows])
            table.add([{k: r[k] for k in ("owner", "session_id", "text", "created_at")} | {"vector": v}
                       for r, v in zip(rows, vectors)])
        return table

    @property
    def table(self):
        """The LanceDB table (opened on first use)."""
        return self._table.get()

    def add(self, owner: str, session_id: str, text: str) -> None:
        """Index one user message, in the writer thread (returns at once; ``recall`` sees it)."""
        self._writer.submit(self._add, owner, session_id, text, time.time())

    def _add(self, owner: str, session_id: str, text: str, created_at: float) -> None:
        try:
            vector = self.embedder.encode([text])[0]
            with self._lock:
                self.table.add([{"owner": owner, "session_id": session_id, "text": text, "created_at": created_at,
                                 "vector": vector}])
        except (LoadError, OSError, ValueError, RuntimeError) as exc:  # memory is a convenience: log, go on
            log.warning("a question was not added to the memory index: %s", exc)

    def flush(self) -> None:
        """Wait for the questions added so far to be in the table."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        """Write the questions added so far, then stop the writer thread (a write after ``Services.close`` would
        land in a data dir its owner may already be removing)."""
        self._writer.shutdown(wait=True)

    def recall(self, owner: str, session_id: str, query: str, k: int = 3) -> list[Memory]:
        """The ``k`` past messages of ``owner``'s other sessions nearest to ``query``.

        Returns:
            Nearest first, only those within ``max_distance``.
        """
        self.flush()
        where = f"owner = {sql_quote(owner)} AND session_id != {sql_quote(session_id)}"
        rows = (self.table.search(self.embedder.encode_query(query)).distance_type("cosine")
                .where(where, prefilter=True).limit(k).to_list())
        return [Memory(r["text"], r["session_id"], r["created_at"], r["_distance"]) for r in rows
                if r["_distance"] <= self.max_distance]

    def purge(self) -> str:
        """Compact the memory table and delete its older versions (``purge_versions``), so the questions of a
        deleted chat leave no bytes on the disk; nothing to do while the table has not been opened.

        Returns:
            What was removed, for the log.
        """
        if not self._table.ready:
            return "memory: not opened"
        self.flush()
        return _purge(self)

    def delete_session(self, owner: str, session_id: str) -> None:
        """Forget every message of a session (after the writes asked before it)."""
        self.flush()
        with self._lock:
            self.table.delete(f"owner = {sql_quote(owner)} AND session_id = {sql_quote(session_id)}")


def _purge(index: MemoryIndex) -> str:
    """``MemoryIndex.purge``'s work (the table opened already): the table is then opened again on the store's
    connection, which ``Store.purge`` renewed (the old one, caches and open index files with it, closes once
    nothing uses it)."""
    with index._lock:
        done = purge_versions(index.table)
        index._table.replace(index.documents.store.db.open_table("memory"))
        return done


def memory_user_text(question: str, memories: list[Memory]) -> str:
    """The question with recalled messages ahead of it, marked as memory (they go in the user turn)."""
    if not memories:
        return question
    lines = "\n".join(f"- {time.strftime('%Y-%m-%d', time.localtime(m.created_at))}: {m.text}" for m in memories)
    return f"Memory (the user's earlier questions in other chats):\n{lines}\n\n{question}"
