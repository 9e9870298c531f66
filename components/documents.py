"""Documents panel: upload, list (with cache state), select for chat, cache, delete."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.services import Services
from components.common import USER_ERRORS, human_bytes, owner_of, user_errors

log = logging.getLogger(__name__)

COLUMNS = ["Name", "Pages", "Tokens", "Chunks", "Size", "Cached"]
FILE_TYPES = [".pdf", ".docx", ".txt", ".md", ".markdown"]


@dataclass
class DocumentsPanel:
    """Components other panels read or refresh."""

    table: gr.Dataframe
    selector: gr.CheckboxGroup
    status: gr.Markdown


def table_rows(services: Services, owner: str) -> list[list]:
    """Rows of the documents table, with each document's single-document cache state."""
    cached = services.chat.cached(owner)
    rows = []
    for d in services.documents.list(owner):
        entry = cached.get((d.doc_id,))
        state = f"✓ {entry.n_tokens:,} tok · {human_bytes(entry.state_bytes)}" if entry else "—"
        rows.append([d.name, d.pages, f"{d.tokens:,}", d.n_chunks, human_bytes(d.size_bytes), state])
    return rows


def refresh(services: Services, owner: str, selected: list[str] | None = None):
    """New values for the table and the selector, keeping still-existing selections."""
    docs = services.documents.list(owner)
    ids = {d.doc_id for d in docs}
    choices = [(d.name, d.doc_id) for d in docs]
    keep = [s for s in (selected or []) if s in ids]
    return gr.Dataframe(value=table_rows(services, owner), headers=COLUMNS), gr.CheckboxGroup(choices=choices, value=keep)


def render(services: Services) -> DocumentsPanel:
    """Build the documents panel and wire its events."""
    gr.Markdown("### Documents")
    files = gr.File(label="Upload PDF, DOCX, TXT or Markdown", file_count="multiple", file_types=FILE_TYPES,
                    height=110)
    password = gr.Textbox(label="PDF password (only for encrypted PDFs)", type="password", max_lines=1)
    status = gr.Markdown()
    selector = gr.CheckboxGroup(label="Use in chat", choices=[], info="Selected documents are read by the model.")
    with gr.Row():
        cache_btn = gr.Button("Cache", variant="primary", size="sm")
        delete_btn = gr.Button("Delete", variant="stop", size="sm")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=320,
                         column_widths=["34%", "9%", "12%", "10%", "12%", "23%"])

    def upload_files(paths: list[str] | None, pdf_password: str, selected: list[str], request: gr.Request,
                     progress=gr.Progress()):
        owner = owner_of(request)
        lines, new_ids = [], []
        for i, path in enumerate(paths or []):
            name = Path(path).name

            def step(fraction: float, desc: str, i=i, name=name) -> None:
                progress((i + fraction) / len(paths), desc=f"{name}: {desc}")

            try:
                row, created = services.documents.upload(owner, Path(path), name, pdf_password or None, step)
            except USER_ERRORS as exc:
                gr.Warning(str(exc))
                lines.append(f"✗ {exc}")
                continue
            new_ids.append(row.doc_id)
            lines.append(f"✓ **{row.name}**: {row.pages} page{'s' * (row.pages != 1)}, {row.n_chunks} chunks"
                         if created else f"= **{row.name}** was already uploaded")
        table_v, selector_v = refresh(services, owner, list(selected or []) + new_ids)
        return "\n\n".join(lines), table_v, selector_v, None

    def cache_selected(selected: list[str], request: gr.Request, progress=gr.Progress()):
        owner = owner_of(request)
        if not selected:
            raise gr.Error("Select a document under 'Use in chat' first, then press Cache.")
        lines = []
        with user_errors():
            for i, doc_id in enumerate(selected):
                name = services.documents.get(owner, doc_id).name
                progress(i / len(selected), desc=f"Reading {name} into the KV cache")
                r = services.chat.cache_documents(owner, [doc_id])
                verb = "already cached" if r["tier"] == "disk" else f"cached in {r['seconds']:.2f} s"
                lines.append(f"✓ **{name}** {verb}: {r['tokens']:,} tokens, {human_bytes(r['bytes'])}")
        return "\n\n".join(lines), refresh(services, owner, selected)[0]

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

    files.upload(upload_files, [files, password, selector], [status, table, selector, files], api_visibility="private")
    cache_btn.click(cache_selected, [selector], [status, table], concurrency_id="llm", concurrency_limit=1,
                    api_visibility="private")
    delete_btn.click(delete_selected, [selector], [status, table, selector], api_visibility="private")
    return DocumentsPanel(table=table, selector=selector, status=status)
