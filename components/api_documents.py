"""The named API endpoints for documents and their KV caches (upload, list, search, text, re-index, delete,
cache, list/pin/delete caches), registered by ``components.api.render`` before the chat, session and model
ones; docstrings are what MCP clients read."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gradio as gr

from backend.documents import DocumentRow
from backend.services import Services
from components.common import check_upload, every_owner, owner_of, user_errors
from components.guard import api
from components.upload_copies import discard_temp_copies
from components.uploads import upload_many


def document_dict(row: DocumentRow, cached: dict) -> dict:
    """A document as the API returns it (sizes in bytes, times in Unix seconds).

    Args:
        row: the document.
        cached: ``CacheCatalog.cached(owner)``, read once by the caller for all rows.
    """
    entry = cached.get((row.doc_id,))
    return {"doc_id": row.doc_id, "name": row.name, "kind": row.kind, "pages": row.pages, "ocr_pages": row.ocr_pages,
            "chars": row.chars,
            "tokens": row.tokens, "chunks": row.n_chunks, "size_bytes": row.size_bytes,
            "uploaded_at": row.uploaded_at, "cached": entry is not None,
            "cache_tokens": entry.n_tokens if entry else None, "cache_bytes": entry.state_bytes if entry else None}


def render(services: Services) -> None:
    """Register the document and cache endpoints (no visible UI)."""
    upload_in = gr.File(visible=False, label="file")
    password_in = gr.Textbox("", visible=False, label="password")
    cache_in = gr.Checkbox(services.settings.prime_on_upload, visible=False, label="cache")
    name_in = gr.Textbox("", visible=False, label="name")
    figures_in = gr.Checkbox(False, visible=False, label="figures")
    upload_out = gr.JSON(visible=False)
    upload_trigger = gr.Button(visible=False)

    def upload_document(file: str, password: str, cache: bool, name: str = "", figures: bool = False,
                        request: gr.Request = None) -> dict:
        """Upload one PDF, DOCX, TXT, Markdown or image file; scanned PDF pages and images are read with OCR.

        Args:
            file: the file (a URL, or a data: URL with base64 contents, from an MCP client).
            password: the password of an encrypted PDF; "" when it has none.
            cache: prime its KV cache right away when it fits the context (the original upload_and_cache).
            name: the document's file name, e.g. "report.pdf" (a data: URL has none); "" keeps the file's own.
            figures: have the loaded vision model describe the PDF's pages that are mostly figures (charts,
                diagrams, photos); each description is searched and cited as a section of its page.

        Returns:
            doc_id, name, kind, pages, ocr_pages, chars, tokens, chunks, size_bytes, cache state, created.
        """
        if not file:
            raise gr.Error("No file was sent; attach a PDF, DOCX, TXT, Markdown or image file.")
        owner = owner_of(request)
        try:
            with user_errors():
                check_upload(services, request, Path(file))
                row, created = services.documents.upload(owner, Path(file), name or Path(file).name,
                                                         password or None, figures=figures)
        finally:
            discard_temp_copies([Path(file)], services.settings.purge_delay_s)  # read or refused: not needed
        with user_errors():
            if cache:
                services.primer.cache_if_possible(owner, row.doc_id)
        return {**document_dict(row, services.caches.cached(owner)), "created": created}

    upload_trigger.click(upload_document, [upload_in, password_in, cache_in, name_in, figures_in], [upload_out],
                         api_name="upload_document")
    many_in = gr.File(visible=False, label="files", file_count="multiple")

    def upload_documents(files: list[str], password: str, cache: bool, request: gr.Request = None) -> dict:
        """Upload many PDF, DOCX, TXT, Markdown or image files at once, or zip archives of them; a file that fails
        is named with the reason and the others still upload.

        Args:
            files: the files (zip archives are opened into their documents).
            password: the password of encrypted PDFs; "" when none.
            cache: prime each new document's KV cache right away when a model is loaded.

        Returns:
            summary (one line), documents (each as upload_document returns it), failed (one sentence per file
            or archive member not uploaded).
        """
        if not files:
            raise gr.Error("No files were sent; attach PDF, DOCX, TXT, Markdown or image files, or a zip of them.")
        owner = owner_of(request)
        result = upload_many(services, request, [(Path(f), Path(f).name) for f in files], password or None, cache)
        cached = services.caches.cached(owner)
        rows = {r.doc_id: r for r in services.documents.list(owner)}
        docs = [{**document_dict(rows[d["doc_id"]], cached), "created": d["created"]}
                for d in result.done if d.get("doc_id") in rows]
        return {"summary": result.summary(), "documents": docs, "failed": result.failed}

    upload_trigger.click(upload_documents, [many_in, password_in, cache_in], [upload_out], api_name="upload_documents")

    def list_documents(request: gr.Request) -> list[dict]:
        """List the documents with their page, token and chunk counts and cache state."""
        owner = owner_of(request)
        cached = services.caches.cached(owner)
        return [document_dict(r, cached) for r in services.documents.list(owner)]

    def search_documents(query: str, doc_ids: list[str], k: int, request: gr.Request) -> list[dict]:
        """Search the documents for the passages that best match a query (hybrid BM25 + vector search; documents
        the query or the best passages name by file name are raised, so a second document is found through the first).

        Args:
            query: what to look for, in words.
            doc_ids: documents to search (ids from list_documents); empty searches all.
            k: how many passages to return, 1 to 100.

        Returns:
            Up to k chunks, best first: doc_id, name, page, section, idx, score, text, ocr.
        """
        with user_errors():
            hits = services.documents.search(owner_of(request), query, list(doc_ids or []), int(k))
        return [asdict(h) for h in hits]

    def get_document_text(doc_id: str, request: gr.Request) -> dict:
        """Get the full extracted text of one document.

        Args:
            doc_id: the document's id (from list_documents).

        Returns:
            doc_id, name, kind and its pages as a list of {page, section, text, ocr}.
        """
        owner = owner_of(request)
        with user_errors():
            row = services.documents.get(owner, doc_id)
            pages = services.documents.pages(owner, doc_id)
        return {"doc_id": doc_id, "name": row.name, "kind": row.kind,
                "pages": [{"page": p.number, "section": p.section, "text": p.text, "ocr": p.ocr} for p in pages]}

    def reindex_document(doc_id: str, request: gr.Request) -> dict:
        """Extract, chunk and embed a document again; returns the updated document.

        Args:
            doc_id: the document's id.
        """
        owner = owner_of(request)
        with user_errors():
            row = services.documents.reindex(owner, doc_id)
        return document_dict(row, services.caches.cached(owner))

    def delete_document(doc_id: str, request: gr.Request) -> dict:
        """Delete a document with its chunks and KV caches.

        Args:
            doc_id: the document's id.
        """
        with user_errors():
            services.documents.delete(owner_of(request), doc_id)
        return {"doc_id": doc_id, "deleted": True}

    def cache_document(doc_id: str, request: gr.Request) -> dict:
        """Prefill the system instructions plus this document and save the KV state to disk; a document
        longer than the context window has each chunk's RAG prefix cached instead (tier ``chunks``).

        Args:
            doc_id: the document's id.
        """
        with user_errors():
            return services.primer.cache_documents(owner_of(request), [doc_id])

    def list_caches(request: gr.Request) -> list[dict]:
        """The KV-cache entries: key, documents, doc_ids, tokens, bytes, tier, usable (fits the
        loaded model), created_at, last_used_at (Unix seconds), chunks (chunk indexes of a RAG chunk
        prefix, empty for documents), owner, pinned (eviction keeps it). An admin gets every user's entries."""
        return [asdict(c) for c in services.caches.list(owner_of(request), every_owner(services, request))]

    def delete_cache(key: str, request: gr.Request) -> dict:
        """Delete one KV-cache entry by key; its documents stay.

        Args:
            key: the entry's key (from list_caches).
        """
        with user_errors():
            info = services.caches.delete(owner_of(request), key, every_owner(services, request))
        return {"key": info.key, "deleted": True, "bytes": info.bytes}

    def pin_cache(key: str, pinned: bool = True, request: gr.Request = None) -> dict:
        """Pin (or unpin) the documents of a KV-cache entry: while pinned, eviction never deletes an entry
        holding them. Returns the entry as list_caches lists it, and the budget in words.

        Args:
            key: the entry's key (from list_caches).
            pinned: false unpins.
        """
        with user_errors():
            info = services.caches.pin(owner_of(request), key, bool(pinned), every_owner(services, request))
        return {**asdict(info), "budget": services.caches.budget()}

    llm = {"concurrency_id": "chat", "concurrency_limit": None}  # the batch scheduler queues
    api(list_documents, "list_documents")
    api(search_documents, "search_documents", ranges={"k": (1, 100)})
    api(get_document_text, "get_document_text")
    api(reindex_document, "reindex_document")
    api(delete_document, "delete_document")
    api(cache_document, "cache_document", **llm)
    api(list_caches, "list_caches")
    api(pin_cache, "pin_cache")
    api(delete_cache, "delete_cache")
