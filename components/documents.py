"""Documents panel: upload (many files or a zip at once), the document table, select for chat, cache, re-index, delete, preview."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.services import Services
from components.common import human_bytes, owner_of, user_errors
from components.uploads import upload_many

log = logging.getLogger(__name__)

COLUMNS = ["Name", "Type", "Pages", "Tokens", "Chunks", "Size", "Uploaded", "Cached"]
PREVIEW_CHARS = 20_000
FILE_TYPES = [".pdf", ".docx", ".txt", ".md", ".markdown", ".zip"]


@dataclass
class DocumentsPanel:
    """Components other panels read or refresh."""

    table: gr.Dataframe
    selector: gr.CheckboxGroup
    status: gr.Markdown
    row_ids: gr.State


def table_rows(services: Services, docs: list) -> list[list]:
    """Rows of the documents table, with each document's single-document cache state."""
    cached = services.caches.cached(docs[0].owner) if docs else {}
    rows = []
    for d in docs:
        entry = cached.get((d.doc_id,))
        state = f"✓ {entry.n_tokens:,} tok · {human_bytes(entry.state_bytes)}" if entry else "—"
        uploaded = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.uploaded_at))
        pages = f"{d.pages} ({d.ocr_pages} OCR)" if d.ocr_pages else d.pages
        rows.append([d.name, d.kind.upper(), pages, f"{d.tokens:,}", d.n_chunks, human_bytes(d.size_bytes),
                     uploaded, state])
    return rows


def refresh(services: Services, owner: str, selected: list[str] | None = None):
    """New values for the table, the selector (keeping still-existing selections) and the row ids."""
    docs = services.documents.list(owner)
    ids = [d.doc_id for d in docs]
    keep = [s for s in (selected or []) if s in ids]
    return (gr.Dataframe(value=table_rows(services, docs), headers=COLUMNS),
            gr.CheckboxGroup(choices=[(d.name, d.doc_id) for d in docs], value=keep), ids)


def preview_markdown(services: Services, owner: str, doc_id: str) -> str:
    """The extracted text of a document as Markdown, page and section headings included, cut at
    ``PREVIEW_CHARS`` characters."""
    row = services.documents.get(owner, doc_id)
    parts, used = [f"**{row.name}**: {row.pages} page{'s' * (row.pages != 1)}, {row.chars:,} characters"], 0
    for page in services.documents.pages(owner, doc_id):
        head = " · ".join(x for x in (f"page {page.number}" if row.kind == "pdf" else "", page.section) if x)
        text = page.text[: max(PREVIEW_CHARS - used, 0)]
        used += len(text)
        parts.append((f"##### {head}\n" if head else "") + "```text\n" + text.replace("```", "ʼʼʼ") + "\n```")
        if used >= PREVIEW_CHARS:
            parts.append(f"*… preview cut at {PREVIEW_CHARS:,} characters*")
            break
    return "\n\n".join(parts)


def render(services: Services) -> DocumentsPanel:
    """Build the documents panel and wire its events."""
    gr.Markdown("### Documents")
    files = gr.File(label="Upload PDF, DOCX, TXT or Markdown files, or a .zip of them", file_count="multiple",
                    file_types=FILE_TYPES,
                    height=110)
    with gr.Row():
        password = gr.Textbox(label="PDF password (only for encrypted PDFs)", type="password", max_lines=1, scale=3)
        prime = gr.Checkbox(services.settings.prime_on_upload, label="Cache on upload", scale=1,
                            info="Read each new document into the KV cache at once.")
    status = gr.Markdown()
    selector = gr.CheckboxGroup(label="Use in chat", choices=[], info="Selected documents are read by the model.")
    with gr.Row():
        cache_btn = gr.Button("Cache", variant="primary", size="sm")
        reindex_btn = gr.Button("Re-index", size="sm")
        delete_btn = gr.Button("Delete", variant="stop", size="sm")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=360, render=False,
                         label="Click a row to preview the text the app extracted",
                         column_widths=["30%", "7%", "7%", "9%", "8%", "9%", "13%", "17%"])
    row_ids = gr.State([])

    def upload_files(paths: list[str] | None, pdf_password: str, cache: bool, selected: list[str],
                     request: gr.Request, progress=gr.Progress()):
        owner = owner_of(request)
        result = upload_many(services, request, [(Path(p), Path(p).name) for p in paths or []],
                             pdf_password or None, cache, lambda f, desc: progress(f, desc=desc))
        lines = [f"**{result.summary()}**"] if len(result.done) + len(result.skipped) > 1 else []
        for d in result.done:
            if "error" in d:
                lines.append(f"✗ {d['error']}")
                continue
            ocr = f" ({d['ocr_pages']} read by OCR)" if d["ocr_pages"] else ""
            line = (f"✓ **{d['name']}**: {d['pages']} page{'s' * (d['pages'] != 1)}{ocr}, {d['chunks']} chunks"
                    if d["created"] else f"= **{d['name']}** was already uploaded")
            if cache:
                primed = d["cached"]
                line += (f", not cached: {d['cache_error']}" if "cache_error" in d else
                         ", not cached (no model loaded, or too long: questions will use retrieval)" if not primed
                         else f", cached as {primed['chunks']} RAG chunks" if primed["tier"] == "chunks"
                         else f", cached ({primed['tokens']:,} tokens)")
            lines.append(line)
        lines += [f"✗ {s}" for s in result.skipped]
        if result.failed:
            gr.Warning(result.failed[0] if len(result.failed) == 1 else
                       f"{len(result.failed)} files were not uploaded; the list under the upload box says why.")
        low = services.disk_warning()
        if low:
            gr.Warning(low)
            lines.append(f"⚠ {low}")
        return "\n\n".join(lines), *refresh(services, owner, list(selected or []) + result.new_ids), None

    def cache_selected(selected: list[str], request: gr.Request, progress=gr.Progress()):
        owner = owner_of(request)
        if not selected:
            raise gr.Error("Select a document under 'Use in chat' first, then press Cache.")
        lines = []
        with user_errors():
            for i, doc_id in enumerate(selected):
                name = services.documents.get(owner, doc_id).name
                progress(i / len(selected), desc=f"Reading {name} into the KV cache")

                def step(done: int, total: int, i=i, name=name) -> None:
                    progress((i + done / total) / len(selected), desc=f"{name}: chunk {done} of {total}")

                r = services.primer.cache_documents(owner, [doc_id], step)
                if r["tier"] == "chunks":
                    why = r["reason"].removeprefix("auto: ").replace("so retrieval", "so Auto retrieves from it")
                    lines.append(f"✓ **{name}**: {why}; each of its {r['chunks']} chunks was cached for that "
                                 f"({r['computed']} computed in {r['seconds']:.1f} s): {human_bytes(r['bytes'])}")
                    continue
                verb = "already cached" if r["tier"] == "disk" else f"cached in {r['seconds']:.2f} s"
                lines.append(f"✓ **{name}** {verb}: {r['tokens']:,} tokens, {human_bytes(r['bytes'])}")
        return "\n\n".join(lines), refresh(services, owner, selected)[0]

    def reindex_selected(selected: list[str], request: gr.Request, progress=gr.Progress()):
        owner = owner_of(request)
        if not selected:
            raise gr.Error("Select the documents to re-index under 'Use in chat' first.")
        lines = []
        with user_errors():
            for i, doc_id in enumerate(selected):
                def step(fraction: float, desc: str, i=i) -> None:
                    progress((i + fraction) / len(selected), desc=desc)

                row = services.documents.reindex(owner, doc_id, step)
                lines.append(f"✓ **{row.name}** re-indexed: {row.n_chunks} chunks")
        return "\n\n".join(lines), *refresh(services, owner, selected)

    def delete_selected(selected: list[str], request: gr.Request):
        owner = owner_of(request)
        if not selected:
            raise gr.Error("Select the documents to delete under 'Use in chat' first.")
        with user_errors():
            names = []
            for doc_id in selected:
                names.append(services.documents.get(owner, doc_id).name)
                services.documents.delete(owner, doc_id)
        return f"Deleted {', '.join(names)}.", *refresh(services, owner, [])

    listing = [table, selector, row_ids]
    files.upload(upload_files, [files, password, prime, selector], [status, *listing, files], api_visibility="private")
    cache_btn.click(cache_selected, [selector], [status, table], concurrency_id="chat", concurrency_limit=None,
                    api_visibility="private")
    reindex_btn.click(reindex_selected, [selector], [status, *listing], api_visibility="private")
    delete_btn.click(delete_selected, [selector], [status, *listing], api_visibility="private")
    return DocumentsPanel(table=table, selector=selector, status=status, row_ids=row_ids)


def render_manager(services: Services, panel: DocumentsPanel) -> None:
    """Place the document table (built by ``render``) full width, with a preview of a clicked row."""
    panel.table.render()
    with gr.Accordion("Preview", open=False) as preview_box:
        preview = gr.Markdown("Click a document in the table to read the text the app extracted from it.",
                              max_height=480)

    def show_preview(ids: list[str], evt: gr.SelectData, request: gr.Request):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not ids or row is None or row >= len(ids):
            return gr.Markdown(), gr.Accordion()
        with user_errors():
            return preview_markdown(services, owner_of(request), ids[row]), gr.Accordion(open=True)

    panel.table.select(show_preview, [panel.row_ids], [preview, preview_box], api_visibility="private")
