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

COLUMNS = ["Name", "Type", "Pages", "Tokens", "Chunks", "Size", "Uploaded", "Cached", "ID"]
ID_CHARS = 8  # of the doc_id shown in the ID column: what a clicked row is found by, however the table is sorted
PREVIEW_CHARS = 20_000
LISTED_UPLOADS = 10  # an upload of more documents lists only its failures one by one
AUTO_SELECT_MAX = 5  # an upload of at most this many documents selects them for chat at once
SHOWN_ROWS = 200  # most documents drawn at once, in the table and under "Use in chat" (benchmarks/library.py)
FILE_TYPES = [".pdf", ".docx", ".txt", ".md", ".markdown", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".zip"]


@dataclass
class DocumentsPanel:
    """Components other panels read or refresh."""

    table: gr.Dataframe
    selector: gr.CheckboxGroup
    status: gr.Markdown
    row_ids: gr.State
    query: gr.Textbox


def plural(n: int, word: str) -> str:
    """``1 page``, ``3 pages``."""
    return f"{n:,} {word}{'s' * (n != 1)}"


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
                     uploaded, state, d.doc_id[:ID_CHARS]])
    return rows


def matching(docs: list, query: str | None) -> list:
    """The documents whose name holds every word of ``query`` (case-insensitive; all of them for none)."""
    words = (query or "").lower().split()
    return [d for d in docs if all(w in d.name.lower() for w in words)]


def selector_label(shown: int, found: int, total: int, filtered: bool) -> str:
    """The "Use in chat" label: how many documents are listed, of how many match the filter and exist."""
    if found > shown:
        return (f"Use in chat (the newest {shown:,} of {found:,} matching)" if filtered else
                f"Use in chat (the newest {shown:,} of {total:,}; filter by name for the rest)")
    return f"Use in chat ({shown:,} of {total:,} shown)" if filtered else "Use in chat"


def refresh(services: Services, owner: str, selected: list[str] | None = None, query: str | None = None):
    """New values for the table, the selector and the row ids: the documents matching ``query`` (the filter
    box), at most the newest ``SHOWN_ROWS`` of them, and in the selector the still-existing selections too, so
    filtering never deselects one."""
    docs = services.documents.list(owner)
    ids = {d.doc_id for d in docs}
    keep = [s for s in (selected or []) if s in ids]
    found = matching(docs, query)
    shown = found[-SHOWN_ROWS:]  # oldest first, so the newest
    hidden = set(keep) - {d.doc_id for d in shown}  # selected but filtered out or past the cap: still listed
    listed = shown + [d for d in docs if d.doc_id in hidden]
    label = selector_label(len(shown), len(found), len(docs), bool(query and query.strip()))
    return (gr.Dataframe(value=table_rows(services, shown), headers=COLUMNS),
            gr.CheckboxGroup(choices=[(d.name, d.doc_id) for d in listed], value=keep, label=label),
            [d.doc_id for d in shown])


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
    # One line of label: in the app's theme a longer one wrapped over "Drop File Here". Images are read by OCR.
    files = gr.File(label="Upload PDF, DOCX, TXT, Markdown, images, .zip", file_count="multiple",
                    file_types=FILE_TYPES, height=120)
    with gr.Row():
        password = gr.Textbox(label="PDF password (only for encrypted PDFs)", type="password", max_lines=1, scale=3)
        with gr.Column(scale=2, min_width=180):
            prime = gr.Checkbox(services.settings.prime_on_upload, label="Cache on upload",
                                info="Read each new document into the KV cache at once.")
            figures = gr.Checkbox(False, label="Describe figure pages",
                                  info="The vision model describes PDF pages of charts, diagrams or photos.")
    status = gr.Markdown()
    query = gr.Textbox(placeholder="Filter documents by name", show_label=False, max_lines=1, container=False)
    selector = gr.CheckboxGroup(label="Use in chat", choices=[], info="Selected documents are read by the model.",
                                show_select_all=True, elem_id="use-in-chat")
    with gr.Row():
        cache_btn = gr.Button("Cache", variant="primary", size="sm")
        reindex_btn = gr.Button("Re-index", size="sm")
        delete_btn = gr.Button("Delete", variant="stop", size="sm")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=360, render=False,
                         label="Click a row to preview the text the app extracted",
                         column_widths=["28%", "6%", "7%", "9%", "7%", "8%", "12%", "15%", "8%"])
    row_ids = gr.State([])

    def upload_files(paths: list[str] | None, pdf_password: str, cache: bool, describe: bool, selected: list[str],
                     q: str, request: gr.Request, progress=gr.Progress()):
        owner = owner_of(request)
        result = upload_many(services, request, [(Path(p), Path(p).name) for p in paths or []],
                             pdf_password or None, cache, lambda f, desc: progress(f, desc=desc), describe)
        lines = [f"**{result.summary()}**"] if len(result.done) + len(result.skipped) > 1 else []
        uploaded = [d for d in result.done if "error" not in d]
        if len(uploaded) > LISTED_UPLOADS:  # a library: the failures one by one, the rest in the table
            names = ", ".join(d["name"] for d in uploaded[:5])
            lines.append(f"✓ {names} and {len(uploaded) - 5:,} more (all in the table)")
        for d in result.done:
            if "error" in d:
                lines.append(f"✗ {d['error']}")
                continue
            if len(uploaded) > LISTED_UPLOADS:
                continue
            ocr = f" ({d['ocr_pages']} read by OCR)" if d["ocr_pages"] else ""
            line = (f"✓ **{d['name']}**: {plural(d['pages'], 'page')}{ocr}, {plural(d['chunks'], 'chunk')}"
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
        chosen = result.new_ids if len(result.new_ids) <= AUTO_SELECT_MAX else []  # a library: let the user choose
        return "\n\n".join(lines), *refresh(services, owner, list(selected or []) + chosen, q), None

    def cache_selected(selected: list[str], q: str, request: gr.Request, progress=gr.Progress()):
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
        return "\n\n".join(lines), refresh(services, owner, selected, q)[0]

    def reindex_selected(selected: list[str], q: str, request: gr.Request, progress=gr.Progress()):
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
        return "\n\n".join(lines), *refresh(services, owner, selected, q)

    def delete_selected(selected: list[str], q: str, request: gr.Request):
        owner = owner_of(request)
        if not selected:
            raise gr.Error("Select the documents to delete under 'Use in chat' first.")
        with user_errors():
            names = []
            for doc_id in selected:
                names.append(services.documents.get(owner, doc_id).name)
                services.documents.delete(owner, doc_id)
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10:,} more" if len(names) > 10 else "")
        return f"Deleted {shown}.", *refresh(services, owner, [], q)

    def filter_list(q: str, selected: list[str], request: gr.Request):
        return refresh(services, owner_of(request), selected, q)

    listing = [table, selector, row_ids]
    query.change(filter_list, [query, selector], listing, queue=False, api_visibility="private")
    files.upload(upload_files, [files, password, prime, figures, selector, query], [status, *listing, files],
                 api_visibility="private")
    cache_btn.click(cache_selected, [selector, query], [status, table], concurrency_id="chat", concurrency_limit=None,
                    api_visibility="private")
    reindex_btn.click(reindex_selected, [selector, query], [status, *listing], api_visibility="private")
    delete_btn.click(delete_selected, [selector, query], [status, *listing], api_visibility="private")
    return DocumentsPanel(table=table, selector=selector, status=status, row_ids=row_ids, query=query)


def render_manager(services: Services, panel: DocumentsPanel) -> None:
    """Place the document table (built by ``render``) full width, with a preview of a clicked row."""
    panel.table.render()
    with gr.Accordion("Preview", open=False) as preview_box:
        preview = gr.Markdown("Click a document in the table to read the text the app extracted from it.",
                              max_height=480)

    def show_preview(ids: list[str], evt: gr.SelectData, request: gr.Request):
        value = evt.row_value or []  # the clicked row's cells: found by its ID cell, however the table is sorted
        found = [d for d in ids if value and d.startswith(str(value[-1]))]
        if not found:
            return gr.Markdown(), gr.Accordion()
        with user_errors():
            return preview_markdown(services, owner_of(request), found[0]), gr.Accordion(open=True)

    panel.table.select(show_preview, [panel.row_ids], [preview, preview_box], api_visibility="private")
