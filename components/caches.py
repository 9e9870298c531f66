"""KV caches panel: every saved prefix (a document set, a RAG chunk, an image question's) with its tokens, size,
tier, last use and pin; a filter box over what they hold; pin (eviction keeps it) or delete one."""

from __future__ import annotations

import time

import gradio as gr

from backend.services import Services
from components.common import every_owner, human_bytes, owner_of, user_errors

COLUMNS = ["Documents", "Kind", "Tokens", "Size", "Tier", "Fits model", "Pinned", "Last used", "Key", "Owner"]
SHOWN_ROWS = 100  # most entries drawn at once: in Chromium, 1,097 rows took 340 ms to render, 200 took 215 ms
# (benchmarks/library.py --browser)


def rows(services: Services, owner: str, everyone: bool = False,
         query: str | None = None) -> tuple[list[list], list[tuple[str, str]], int]:
    """Table rows, the delete dropdown's ``(label, key)`` choices and the count of all entries (``everyone``: an
    admin's view). ``query``: only the entries whose label, kind, key or owner holds every word of it
    (case-insensitive). At most ``SHOWN_ROWS`` rows, the most recently used first; the filter finds the rest."""
    table, choices = [], []
    entries = services.caches.list(owner, everyone)
    words = (query or "").lower().split()
    for c in entries:
        names = c.label
        if words and not all(w in f"{names} {c.kind} {c.key} {c.owner}".lower() for w in words):
            continue
        if len(table) == SHOWN_ROWS:
            break
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.last_used_at))
        table.append([names, c.kind, f"{c.tokens:,}", human_bytes(c.bytes), c.tier, "yes" if c.usable else "no",
                      "yes" if c.pinned else "", used, c.key[:12], c.owner])
        choices.append((f"{names} · {c.tokens:,} tok · {human_bytes(c.bytes)}{' · pinned' if c.pinned else ''}", c.key))
    return table, choices, len(entries)


def render(services: Services):
    """Build the panel; returns ``(table, dropdown, filter box, refresh)``, refresh being
    ``(request, query="") -> (table, dropdown)`` for page load and after an answer."""
    query = gr.Textbox(placeholder="Filter caches by document, kind (document, chunk, image) or key", show_label=False,
                       max_lines=1, container=False)
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=260,
                         label="Saved KV caches (raw llama.cpp state on disk, newest use first)")
    with gr.Row():
        pick = gr.Dropdown(label="Cache entry", choices=[], scale=4)
        refresh_btn = gr.Button("Refresh", size="sm", scale=1)
        pin_btn = gr.Button("Pin / unpin", size="sm", scale=1)
        delete_btn = gr.Button("Delete cache", variant="stop", size="sm", scale=1)
    note = gr.Markdown()

    def refresh(request: gr.Request, q: str = ""):
        data, choices, total = rows(services, owner_of(request), every_owner(services, request), q)
        shown = f" ({len(data):,} of {total:,} shown)" if (q and q.strip()) or len(data) < total else ""
        return (gr.Dataframe(value=data, headers=COLUMNS, label=f"Saved KV caches{shown}: {services.caches.budget()}"),
                gr.Dropdown(choices=choices, value=None))

    def refresh_view(q: str, request: gr.Request):
        return refresh(request, q)

    def pin(key: str | None, q: str, request: gr.Request):
        if not key:
            raise gr.Error("Choose a cache entry to pin or unpin first.")
        with user_errors():
            owner, everyone = owner_of(request), every_owner(services, request)
            listed = {c.key: c for c in services.caches.list(owner, everyone)}
            info = services.caches.pin(owner, key, not (key in listed and listed[key].pinned), everyone)
        state = "pinned: eviction keeps its caches" if info.pinned else "unpinned"
        return f"{info.label}: {state}.", *refresh(request, q)

    def delete(key: str | None, q: str, request: gr.Request):
        if not key:
            raise gr.Error("Choose a cache entry to delete first.")
        with user_errors():
            info = services.caches.delete(owner_of(request), key, every_owner(services, request))
        return f"Deleted the cache of {info.label} ({human_bytes(info.bytes)}).", *refresh(request, q)

    refresh_btn.click(refresh_view, [query], [table, pick], api_visibility="private")
    query.change(refresh_view, [query], [table, pick], queue=False, api_visibility="private")  # as the documents filter
    pin_btn.click(pin, [pick, query], [note, table, pick], api_visibility="private")
    delete_btn.click(delete, [pick, query], [note, table, pick], api_visibility="private")
    return table, pick, query, refresh
