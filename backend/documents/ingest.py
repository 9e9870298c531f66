"""Ingestion: a file becomes a document (extract -> chunk -> embed -> store), and a stored document is read
again (re-index, re-embed after a switch of embedding model). ``DocumentService`` is an ``Ingestion``; the
queries over stored documents stay in ``service``.

Files live under ``data_dir/uploads/<doc_id>/``: the original upload and ``pages.json`` (the extracted pages, so a
prefix can be rebuilt without re-parsing the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path, PureWindowsPath

from backend.documents.chunking import chunk_pages, embedding_text, title_of
from backend.documents.extract import DESCRIPTION_SECTION, DocumentError, Extracted, Page, PasswordRequired, extract
from backend.documents.tables import DocumentRow
from backend.storage.disk import free_bytes, full_sentence, is_disk_full, size_text, write_atomically

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
MAX_NAME_CHARS = 200


def clean_name(filename: str) -> str:
    """The name a document is stored and shown under: the last path part only (``/`` and ``\\`` both split,
    so ``../../x.pdf`` is ``x.pdf``), control and format characters removed, whitespace runs made one space,
    at most ``MAX_NAME_CHARS`` characters with the extension kept.

    Raises:
        DocumentError: nothing usable is left (e.g. ``..``).
    """
    name = PureWindowsPath(filename.replace("/", "\\")).name
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))
    name = " ".join(name.split())
    if name.strip(".") == "":
        raise DocumentError(f"The file name {filename!r} has no usable name; rename the file and upload it again.")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME_CHARS - len(ext) - 1] + dot + ext) if dot and len(ext) <= 10 else name[:MAX_NAME_CHARS]
    return name


def _noop(fraction: float, desc: str) -> None:
    return None


class Ingestion:
    """Upload, re-index and re-embed, for ``DocumentService``, which gives them its ``uploads`` folder, ``store``,
    ``embedder``, ``ocr``, ``describe``, ``count_tokens``, ``drop_derived``, the size and disk limits and the chunk
    window (see its arguments), and ``get``/``file_of``/``_pages`` to read a stored document back."""

    def upload(self, owner: str, path: Path, filename: str | None = None, password: str | None = None,
               progress: Progress = _noop, figures: bool = False) -> tuple[DocumentRow, bool]:
        """Ingest one file: extract, chunk, embed, index.

        Args:
            owner: the uploading user.
            path: the uploaded file on disk (e.g. Gradio's temp copy).
            filename: the name to show; default ``path.name``.
            password: PDF password, if any.
            progress: ``progress(fraction, description)`` callback; descriptions carry counts.
            figures: describe the PDF's pages that are mostly figures with the loaded vision model (``extract``);
                without one, nothing happens.

        Returns:
            ``(row, created)``; ``created`` is False when a byte-identical file was already there.

        Raises:
            DocumentError: any unreadable input (size, type, encryption, no text...), or a disk too full
                to keep it (``disk_reserve_bytes``); nothing of it is left behind.
        """
        path = Path(path)
        name = clean_name(filename or path.name)
        size = path.stat().st_size
        if size > self.max_upload_bytes:
            raise DocumentError(f"'{name}' is {size_text(size)}, over the {size_text(self.max_upload_bytes)} "
                                "upload limit; split it or raise KVC_MAX_UPLOAD_MB.")
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if self.open_seconds is None:
            progress(0.0, "Opening the documents' index (the app has just started)")
        existing = self.store.find_by_sha256(owner, sha)
        if existing is not None:
            return existing, False
        extracted = self._extract(data, name, password, progress, figures)
        self.uploads.mkdir(parents=True, exist_ok=True)
        if free_bytes(self.uploads) < 2 * size + self.disk_reserve_bytes:  # the file and its text, at least
            raise DocumentError(full_sentence(f"'{name}'", self.uploads.parent))
        doc_id = uuid.uuid4().hex
        folder = self.uploads / doc_id
        folder.mkdir(parents=True, exist_ok=True)
        try:
            (folder / name).write_bytes(data)
            row = self._index(owner, doc_id, name, extracted, sha, size, time.time(), progress, replace=False)
        except BaseException as exc:  # nothing of a failed upload stays: its chunks (if written) and files go
            with contextlib.suppress(Exception):  # a failure here is swept at the next start (recovery)
                self.store.delete_chunks({doc_id})
            shutil.rmtree(folder, ignore_errors=True)
            if is_disk_full(exc):
                raise DocumentError(full_sentence(f"'{name}'", self.uploads.parent)) from exc
            raise
        log.info("ingested document %s: %d pages, %d chunks", doc_id, row.pages, row.n_chunks)
        return row, True

    def reindex(self, owner: str, doc_id: str, progress: Progress = _noop) -> DocumentRow:
        """Extract, chunk and embed a stored document again (after an upgrade or a settings change).

        The original file is read again; an encrypted PDF, whose password is not kept, is
        re-chunked from its stored text instead. KV caches of the document are dropped when
        its text changed.

        Args:
            owner: the document's owner.
            doc_id: the document.
            progress: ``progress(fraction, description)`` callback.

        Returns:
            The new row (same ``doc_id`` and upload time).

        Raises:
            DocumentError: unknown id, or its files are gone.
        """
        row = self.get(owner, doc_id)
        try:
            data = self.file_of(row).read_bytes()
        except OSError as exc:
            raise DocumentError(f"The file of '{row.name}' is missing; delete it and upload it again.") from exc
        old_pages, lost = None, None
        try:
            old_pages = self._pages(row)
        except DocumentError as exc:  # the stored text is gone; re-indexing restores it
            lost = exc
        try:
            described = old_pages is not None and any(p.section == DESCRIPTION_SECTION for p in old_pages)
            extracted = self._extract(data, row.name, None, progress, figures=described)
        except PasswordRequired:
            if lost is not None:  # neither the file (encrypted) nor the stored text can be read
                raise lost from None
            extracted = Extracted(row.kind, old_pages)
        old_text = self._prompt_text(old_pages, row.kind) if old_pages is not None else None
        new = self._index(owner, doc_id, row.name, extracted, row.sha256, row.size_bytes, row.uploaded_at,
                          progress, replace=True)
        if self._prompt_text(extracted.pages, extracted.kind) != old_text:
            self.drop_derived(doc_id)
        log.info("re-indexed document %s: %d chunks", doc_id, new.n_chunks)
        return new

    def _extract(self, data: bytes, name: str, password: str | None, progress: Progress,
                 figures: bool = False) -> Extracted:
        """``extract`` (with OCR when on, figure pages described when asked) with its page counts reported as
        the first 20 % of ``progress``."""
        progress(0.0, "Extracting text")
        return extract(data, name, password,
                       progress=lambda done, total, what: progress(0.2 * done / total, f"{what} {done}/{total}"),
                       ocr=self.ocr.read_pages if self.ocr else None,
                       image_text=self.ocr.read_text if self.ocr else None, max_image_pixels=self.max_image_pixels,
                       describe=self.describe, figures=figures, time_limit_s=self.extract_time_limit_s)

    def reembed_all(self, progress: Progress = _noop) -> int:
        """Embed every document again with this embedding model, after a switch of model: each is
        re-chunked from its stored pages (no extraction or OCR again) into the store's new chunks table,
        and the old index is dropped when all are in (``Store.finish_reembedding``). A crash part-way
        starts it over at the next start, with the old index still there.

        Args:
            progress: ``progress(fraction, description)``, per document.

        Returns:
            How many documents were embedded again.
        """
        rows = self.store.all_documents()
        for i, row in enumerate(rows):
            progress(i / max(1, len(rows)), f"Embedding document {i + 1}/{len(rows)} again: {row.name}")
            log.info("re-embedding %s (%d/%d)", row.name, i + 1, len(rows))
            self._index(row.owner, row.doc_id, row.name, Extracted(row.kind, self._pages(row)), row.sha256,
                        row.size_bytes, row.uploaded_at, _noop, replace=True, tokens=row.tokens)
        self.store.finish_reembedding()
        return len(rows)

    def _index(self, owner: str, doc_id: str, name: str, extracted: Extracted, sha: str, size: int,
               uploaded_at: float, progress: Progress, *, replace: bool, tokens: int | None = None) -> DocumentRow:
        """Chunk, embed and store extracted text; write ``pages.json``; return the row (``tokens``: the
        document's length to record, when known; else counted now)."""
        progress(0.2, f"Chunking {extracted.page_count} page{'s' * (extracted.page_count != 1)}")
        if not self.embedder.ready:
            progress(0.2, "Waiting for the embedding model to load (once, after a start)")
            self.embedder.load()
        with self.embedder.lock:  # the tokenizer is not safe to share between threads (see Embedder)
            chunks = chunk_pages(extracted.pages, doc_id, self.embedder.tokenizer, self.chunk_tokens,
                                 self.overlap_tokens, self.embedder.max_seq_length)
            title = title_of(name)
            texts = [embedding_text(c, title, self.embedder.tokenizer, self.embedder.max_seq_length) for c in chunks]
        vectors = self.embedder.encode(
            texts,
            progress=lambda done, total: progress(0.25 + 0.65 * done / total, f"Embedding chunk {done}/{total}"),
        )
        folder = self.uploads / doc_id
        write_atomically(folder / "pages.json", json.dumps([asdict(p) for p in extracted.pages]).encode())
        text = self._prompt_text(extracted.pages, extracted.kind)
        tokens = tokens if tokens is not None else self.count_tokens(text)
        if tokens is None:
            tokens = sum(c.n_tokens for c in chunks)
        row = DocumentRow(doc_id=doc_id, owner=owner, name=name, kind=extracted.kind, sha256=sha,
                          path=str(folder / name), pages=extracted.page_count, chars=len(extracted.text),
                          tokens=tokens, n_chunks=len(chunks), size_bytes=size, uploaded_at=uploaded_at,
                          ocr_pages=extracted.ocr_pages)
        progress(0.92, f"Indexing {len(chunks)} chunks")
        rows = [{"chunk_id": f"{doc_id}:{c.index}", "doc_id": doc_id, "owner": owner, "idx": c.index,
                 "page": c.page, "section": c.section, "text": c.text, "vector": v,
                 "ocr": c.ocr} for c, v in zip(chunks, vectors)]
        (self.store.replace_document if replace else self.store.add_document)(row, rows)
        progress(1.0, f"Indexed {len(chunks)} chunks")
        return row

    @staticmethod
    def _prompt_text(pages: list[Page], kind: str) -> str:
        """The text placed in the prompt: PDF pages keep ``[page N]`` markers for citations."""
        if kind != "pdf":
            return "\n\n".join(p.text for p in pages if p.text.strip())
        return "\n\n".join(f"[page {p.number}]\n{p.text}" for p in pages if p.text.strip())
