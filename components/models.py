"""Model panel: what is loaded, GPU offload support, cached documents; load, download, unload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.kv_cache import KV_TYPE_BYTES, kv_bytes_per_token
from backend.model_registry import HOW_TO_GET_A_MODEL, download, list_local
from backend.services import Services
from components.common import human_bytes, owner_of, user_errors


def status(services: Services, owner: str) -> dict:
    """The model panel's data (also the ``model_status`` API's result).

    Returns:
        ``loaded``, ``model``, ``n_ctx`` (tokens), ``n_gpu_layers``, ``gpu_offload_supported``,
        ``cached_documents`` (name, tokens, bytes per cached single document), ``message``, and
        when loaded ``kv_bytes_per_token`` (bytes per token of KV state for each KV dtype).
    """
    info = services.engine.status()
    if info["loaded"]:
        meta = services.engine.metadata
        info["kv_bytes_per_token"] = {t: kv_bytes_per_token(meta, t, t) for t in KV_TYPE_BYTES}
    names = {d.doc_id: d.name for d in services.documents.list(owner)}
    info["cached_documents"] = [
        {"doc_ids": list(ids), "names": [names.get(i, i) for i in ids], "tokens": e.n_tokens, "bytes": e.state_bytes}
        for ids, e in services.caches.cached(owner).items()
    ]
    info["message"] = (services.model_error or HOW_TO_GET_A_MODEL) if not info["loaded"] else ""
    return info


def kv_size_line(info: dict) -> str:
    """What the KV dtype costs per token and for a full context, and what the other dtype would."""
    per = info["kv_bytes_per_token"]
    now, other = info["type_k"], "q8_0" if info["type_k"] == "f16" else "f16"
    full = human_bytes(per[now] * info["n_ctx"])
    return f"KV state: {human_bytes(per[now])}/token, {full} for a full context ({other}: {human_bytes(per[other])}/token)"


def status_markdown(info: dict) -> str:
    """Render ``status`` as Markdown."""
    offload = "yes" if info["gpu_offload_supported"] else "no (CPU-only build)"
    if not info["loaded"]:
        head = f"**{info['message']}**\n\n- GPU offload in this llama.cpp build: {offload}"
    else:
        head = (f"**{info['model']}**\n\n- `n_ctx`: {info['n_ctx']:,} tokens\n- `n_gpu_layers`: {info['n_gpu_layers']}"
                f"\n- GPU offload in this llama.cpp build: {offload}\n- KV dtype: {info['type_k']}/{info['type_v']},"
                f" `flash_attn`: {info['flash_attn']}\n- {kv_size_line(info)}\n- loaded in {info['load_seconds']:.2f} s")
    cached = info["cached_documents"]
    lines = [f"- {', '.join(c['names'])}: {c['tokens']:,} tokens, {human_bytes(c['bytes'])}" for c in cached]
    return head + "\n\n**Cached documents**\n\n" + ("\n".join(lines) if lines else "none yet")


@dataclass
class ModelsPanel:
    """The status box and its refresh function, which app.py runs on page load."""

    info_box: gr.Markdown
    refresh: Callable  # (request) -> Markdown text


def render(services: Services) -> ModelsPanel:
    """Build the model panel and wire its events."""
    s = services.settings
    info_box = gr.Markdown()
    with gr.Row():
        local = gr.Dropdown(label="Local GGUF files", choices=[str(p) for p in list_local(s.models_dir)],
                            value=str(services.engine.model_path) if services.engine.model_path else None,
                            allow_custom_value=True, scale=3)
        kv_type = gr.Dropdown(list(KV_TYPE_BYTES), value=s.type_k, label="KV dtype (type_k/type_v)", scale=1,
                              info="q8_0 halves the cache size; llama.cpp needs flash_attn for a q8_0 V cache.")
        flash = gr.Checkbox(s.flash_attn, label="flash_attn", scale=1)
        load_btn = gr.Button("Load", scale=1)
        unload_btn = gr.Button("Unload", scale=1)
    with gr.Row():
        repo = gr.Textbox(label="Hugging Face repo", value=s.hf_repo_id, scale=2)
        filename = gr.Textbox(label="File", value=s.hf_filename, scale=2)
        download_btn = gr.Button("Download and load", scale=1)

    def current(request: gr.Request) -> str:
        return status_markdown(status(services, owner_of(request)))

    def load(path: str | None, kv: str, flash_attn: bool, request: gr.Request):
        if not path:
            raise gr.Error("Choose a .gguf file first.")
        with user_errors():
            services.load_model(Path(path), type_k=kv, type_v=kv, flash_attn=bool(flash_attn))
        return current(request)

    def unload(request: gr.Request):
        services.engine.unload()
        return current(request)

    def fetch(repo_id: str, name: str, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc=f"Downloading {name}")
        with user_errors():
            path = download(repo_id.strip(), name.strip(), s.models_dir)
            progress(1, desc="Loading")
            services.load_model(path)
        return current(request), gr.Dropdown(choices=[str(p) for p in list_local(s.models_dir)], value=str(path))

    load_btn.click(load, [local, kv_type, flash], [info_box], concurrency_id="llm", concurrency_limit=1,
                   api_visibility="private")
    unload_btn.click(unload, None, [info_box], concurrency_id="llm", concurrency_limit=1, api_visibility="private")
    download_btn.click(fetch, [repo, filename], [info_box, local], concurrency_id="llm", concurrency_limit=1,
                       api_visibility="private")
    return ModelsPanel(info_box=info_box, refresh=current)
