"""Documents and their lifecycle: list, read, search, delete; the index opened and checked on first use
(ingestion, extract -> chunk -> embed -> store, is ``ingest.Ingestion``).

Files live under ``data_dir/uploads/<doc_id>/``: the original upload and ``pages.json``
(the extracted pages, so a prefix can be rebuilt without re-parsing the file).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backend.documents.embeddings import Embedder
from backend.documents.extract import DocumentError, Page
from backend.documents.images import MAX_IMAGE_PIXELS
from backend.documents.ingest import Ingestion
from backend.documents.ocr import PageOcr
from backend.documents.recovery import Recovery, recover
from backend.documents.store import DocumentRow, Hit, Store
from backend.storage.paths import is_hex_id

log = logging.getLogger(__name__)


def _no_llm(text: str) -> None:
    return None


def _nothing_derived(doc_id: str) -> None:
    return None


@dataclass(frozen=True)
class DocText:
    """A document's text for the prompt (pages joined, page markers kept)."""

    doc_id: str
    name: str
    text: str


class DocumentService(Ingestion):
    """Upload, list, read, search, re-index and delete documents (ingestion itself: ``Ingestion``).

    The LanceDB index opens on first use, or ahead of it when the start-up warm-up calls ``open``; opening runs
    the start-up check (``recovery``) before anything else may read the index: every other thread asking for
    ``store`` meanwhile waits for both.

    Args:
        uploads: ``data_dir/uploads``.
        store: the LanceDB tables, or a function that opens them (called once, by ``open``).
        embedder: the sentence-transformers model.
        count_tokens: LLM tokens in a text, or None when no model is loaded (then the chunks'
            embedding-model tokens are counted instead).
        drop_derived: called with a ``doc_id`` whose text changed or which was deleted, so that
            state derived from its text elsewhere (KV caches) goes with it.
        max_upload_bytes: size limit, bytes.
        chunk_tokens / overlap_tokens: chunking window, embedding-model tokens.
        ocr: reads PDF pages that have no usable text layer, and uploaded images; None turns OCR off.
        disk_reserve_bytes: free space an upload must leave on the disk (``backend.storage.disk``), bytes.
        max_image_pixels: the most pixels (width x height) of an uploaded image.
        describe: describes an uploaded image in words (the loaded vision model); returns "" when it cannot.
        extract_time_limit_s: seconds a file's parsers may take, in a child process (``extract``); None: no limit,
            read in this process.
    """

    def __init__(self, uploads: Path, store: Store | Callable[[], Store], embedder: Embedder, *, max_upload_bytes: int,
                 chunk_tokens: int,
                 overlap_tokens: int, count_tokens: Callable[[str], int | None] = _no_llm,
                 drop_derived: Callable[[str], object] = _nothing_derived, ocr: PageOcr | None = None,
                 disk_reserve_bytes: int = 0, max_image_pixels: int = MAX_IMAGE_PIXELS,
                 describe: Callable[[object], str] | None = None, extract_time_limit_s: float | None = None):
        self.uploads = Path(uploads)
        self.embedder = embedder
        self._open_store = store if callable(store) else (lambda: store)
        self._store: Store | None = None
        self._opening = threading.Lock()
        self._opener: int | None = None  # the thread running the start-up check, which may read the index
        self.open_seconds: float | None = None
        self.recovery: Recovery | None = None  # what the start-up check found, once the index is open
        self.count_tokens, self.drop_derived = count_tokens, drop_derived
        self.max_upload_bytes = max_upload_bytes
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.ocr = ocr
        self.disk_reserve_bytes = disk_reserve_bytes
        self.max_image_pixels = max_image_pixels
        self.describe = describe
        self.extract_time_limit_s = extract_time_limit_s

    def list(self, owner: str) -> list[DocumentRow]:
        """The owner's documents, oldest first."""
        return self.store.list_documents(owner)

    def get(self, owner: str, doc_id: str) -> DocumentRow:
        """One document.

        Raises:
            DocumentError: unknown id.
        """
        row = self.store.get_document(owner, doc_id) if is_hex_id(doc_id) else None
        if row is None:
            raise DocumentError(f"Document {doc_id if is_hex_id(doc_id) else 'with that id'} does not exist; "
                                "refresh the document list.")
        return row

    def text(self, owner: str, doc_id: str) -> DocText:
        """A document's prompt text.

        Raises:
            DocumentError: unknown id or its files are gone.
        """
        row = self.get(owner, doc_id)
        return DocText(doc_id, row.name, self._prompt_text(self._pages(row), row.kind))

    def chunks(self, owner: str, doc_id: str) -> list[Hit]:
        """A document's chunks in order, as search hits with score 0 (what a RAG turn would retrieve).

        Raises:
            DocumentError: unknown id.
        """
        self.get(owner, doc_id)
        return self.store.chunk_hits(owner, doc_id)

    def pages(self, owner: str, doc_id: str) -> list[Page]:
        """A document's extracted pages (and sections), as stored at ingestion.

        Raises:
            DocumentError: unknown id or its stored text is gone.
        """
        return self._pages(self.get(owner, doc_id))

    def file_of(self, row: DocumentRow) -> Path:
        """Where a document's uploaded file is: ``uploads/<doc_id>/<name>`` under this data dir (the row's
        ``path`` was recorded where the data dir was then, and a data dir may have moved since)."""
        return self.uploads / row.doc_id / row.name

    def _pages(self, row: DocumentRow) -> list[Page]:
        """The stored pages of a known document (``pages.json``)."""
        try:
            path = self.uploads / row.doc_id / "pages.json"
            return [Page(**p) for p in json.loads(path.read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError) as exc:
            raise DocumentError(f"The stored text of '{row.name}' is missing; delete and upload it again.") from exc

    def search(self, owner: str, query: str, doc_ids: list[str] | None, k: int, method: str = "hybrid") -> list[Hit]:
        """Top-k chunks for a query, only from the given documents.

        Args:
            owner: whose documents.
            query: the search text.
            doc_ids: documents to search; None or empty searches all of the owner's documents.
            k: top-k, 1..100.
            method: ``hybrid`` (default), ``vector`` or ``fts``.

        Returns:
            Hits, best first.

        Raises:
            DocumentError: an empty query, ``k`` out of range, or an unknown document id.
        """
        if not (query or "").strip():
            raise DocumentError("The search query is empty; type what to look for.")
        if not 1 <= k <= 100:
            raise DocumentError(f"k must be between 1 and 100, not {k}.")
        if doc_ids:
            known = self.store.names(owner, set(doc_ids))
            missing = [d for d in doc_ids if d not in known]
            if missing:
                raise DocumentError(f"Document {missing[0]} does not exist; refresh the document list.")
        return self.store.search(owner, query, self.embedder.encode_query(query), list(doc_ids) if doc_ids else None,
                                 k, method)

    def delete(self, owner: str, doc_id: str) -> None:
        """Delete a document's rows, chunks, files and KV caches.

        Raises:
            DocumentError: unknown id.
        """
        self.get(owner, doc_id)
        self.store.delete_document(owner, doc_id)
        self.drop_derived(doc_id)
        shutil.rmtree(self.uploads / doc_id, ignore_errors=True)

    @property
    def store(self) -> Store:
        """The LanceDB tables, opened and checked (``open``) on first use; waits while another thread opens them."""
        if self.open_seconds is None and self._opener != threading.get_ident():
            self.open()
        return self._store  # type: ignore[return-value]

    @property
    def index_state(self) -> str:
        """``waiting``, ``loading`` or ``ready (seconds)``: the index's state for the status line."""
        if self.open_seconds is not None:
            return f"ready ({self.open_seconds:.1f} s)"
        return "loading" if self._opening.locked() else "waiting"

    def open(self) -> Recovery:
        """Open the LanceDB index and run the start-up check on it, once: sweep what a crash left half-written and
        re-index documents whose chunks are incomplete (``backend.documents.recovery``). Nothing else reads the
        index before the check is done; a second caller waits for the first.

        Returns:
            What the check found and repaired.

        Raises:
            Whatever opening LanceDB raised (it is tried again on the next call).
        """
        with self._opening:
            if self.open_seconds is None:
                started = time.perf_counter()
                self._opener = threading.get_ident()
                try:
                    self._store = self._open_store()
                    self.recovery = recover(self)
                finally:
                    self._opener = None
                self.open_seconds = time.perf_counter() - started
        return self.recovery  # type: ignore[return-value]
