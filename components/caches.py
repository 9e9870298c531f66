"""KV caches panel: every saved prefix (a document set, or a RAG chunk) with its tokens, size, tier and
last use and pin; pin (eviction keeps it) or delete one."""

from __future__ import annotations

import time

import gradio as gr

from backend.services import Services
from components.common import every_owner, human_bytes, owner_of, user_errors

COLUMNS = ["Documents", "Kind", "Tokens", "Size", "Tier", "Fits model", "Pinned", "Last used", "Key", "Owner"]


def rows(services: Services, owner: str, everyone: bool = False) -> tuple[list[list], list[tuple[str, str]]]:
    """Table rows and the delete dropdown's ``(label, key)`` choices (``everyone``: an admin's view)."""
    table, choices = [], []
    for c in services.caches.list(owner, everyone):
        names = c.label
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(c.last_used_at))
        table.append([names, c.kind, f"{c.tokens:,}", human_bytes(c.bytes), c.tier, "yes" if c.usable else "no",
                      "yes" if c.pinned else "", used, c.key[:12], c.owner])
        choices.append((f"{names} · {c.tokens:,} tok · {human_bytes(c.bytes)}{' · pinned' if c.pinned else ''}", c.key))
    return table, choices


def render(services: Services):
    """Build the panel; returns its refresh function ``(request) -> (table, dropdown)`` for page load."""
    table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True, max_height=260,
                         label="Saved KV caches (raw llama.cpp state on disk, newest use first)")
    with gr.Row():
        pick = gr.Dropdown(label="Cache entry", choices=[], scale=4)
        refresh_btn = gr.Button("Refresh", size="sm", scale=1)
        pin_btn = gr.Button("Pin / unpin", size="sm", scale=1)
        delete_btn = gr.Button("Delete cache", variant="stop", size="sm", scale=1)
    note = gr.Markdown()

    def refresh(request: gr.Request):
        data, choices = rows(services, owner_of(request), every_owner(services, request))
        return (gr.Dataframe(value=data, headers=COLUMNS, label=f"Saved KV caches: {services.caches.budget()}"),
                gr.Dropdown(choices=choices, value=None))

    def pin(key: str | None, request: gr.Request):
        if not key:
            raise gr.Error("Choose a cache entry to pin or unpin first.")
        with user_errors():
            owner, everyone = owner_of(request), every_owner(services, request)
            listed = {c.key: c for c in services.caches.list(owner, everyone)}
            info = services.caches.pin(owner, key, not (key in listed and listed[key].pinned), everyone)
        state = "pinned: eviction keeps its caches" if info.pinned else "unpinned"
        return f"{info.label}: {state}.", *refresh(request)

    def delete(key: str | None, request: gr.Request):
        if not key:
            raise gr.Error("Choose a cache entry to delete first.")
        with user_errors():
            info = services.caches.delete(owner_of(request), key, every_owner(services, request))
        return f"Deleted the cache of {info.label} ({human_bytes(info.bytes)}).", *refresh(request)

    refresh_btn.click(refresh, None, [table, pick], api_visibility="private")
    pin_btn.click(pin, [pick], [note, table, pick], api_visibility="private")
    delete_btn.click(delete, [pick], [note, table, pick], api_visibility="private")
    return table, pick, refresh
