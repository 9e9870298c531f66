"""Model panel: what is loaded, GPU offload support, cached documents; load, download, unload."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import psutil

from backend.inference import (
    AUTO_SLOTS,
    HOW_TO_GET_A_MODEL,
    RECOMMENDED_MODELS,
    bundled_present,
    download,
    expectation,
)
from backend.kvcache import KV_TYPE_BYTES, kv_bytes_per_token
from backend.services import Services
from components.common import human_bytes, is_admin, owner_of, require_admin, user_errors

PART_LABELS = {"documents": "documents' index", "embedder": "embedding model", "ocr": "OCR engine"}


ADMIN_ONLY = ("model_path", "replicas", "remote", "rss_bytes", "preflight", "disk_warning")


def status(services: Services, owner: str, admin: bool = True) -> dict:
    """The model panel's data (also the ``model_status`` API's result).

    A non-admin (``admin`` False) sees what concerns them and nothing of the server's insides: the model's name,
    not its path; the kind of backend, not its address; their own cache entries' counts, not everyone's; and none
    of ``ADMIN_ONLY``.

    Returns:
        ``loaded``, ``model``, ``n_ctx`` (tokens), ``n_gpu_layers``, ``gpu_offload_supported``,
        ``cached_documents`` (name, tokens, bytes per cached single document), ``message``,
        ``backend``, ``rss_bytes`` (process resident memory), ``uptime_s``, ``queued_turns`` (chat
        turns running or waiting), ``caches`` (entries, bytes and budget per tier), ``load_seconds``,
        ``loaded_at``, ``cag_limit`` (the longest document prefix auto reads whole, and where that figure
        comes from), ``disk_warning`` (a sentence when the data dir's disk is nearly full, else null),
        ``parts`` (what loads after the first screen: ``documents``, ``embedder``, ``ocr``, each ``waiting``,
        ``loading``, ``ready (seconds)``, ``failed: why`` or ``off``), and when loaded ``kv_bytes_per_token``
        (bytes per token for each KV dtype), ``verdict`` (the answering model's verdict calibration, one line),
        ``bundled`` (the offline models on disk, best first: file, bytes, licence, origin).
    """
    parts = services.readiness()  # before the documents' list below, which waits for their index
    info = services.engine.status()
    process = psutil.Process()
    remote = services.chat.remote
    backend = (f"remote OpenAI-compatible server {remote.base_url} (model {remote.model}, n_ctx {remote.n_ctx})"
               if remote else "local llama.cpp (in-process)")
    if remote:
        info["remote"] = remote.status()
    if services.chat.replicas is not None:
        info["replicas"] = replica_status(services)
        backend = (f"llama-server replicas ({len(info['replicas'])}), prompts tokenized here with "
                   f"{services.engine.model_path.name}; slot files: "
                   f"{services.settings.remote_slot_dir if services.chat.replicas.slots else 'off'}")
        if services.chat.replicas.unsupported:
            backend += f" ({services.chat.replicas.unsupported})"
        info["backend"] = backend
    info.update(backend=backend, rss_bytes=process.memory_info().rss,
                uptime_s=round(time.time() - process.create_time(), 1), queued_turns=services.chat.queued_turns,
                caches=services.kv_store.usage(), cag_limit=services.chat.planner.cag_limit.describe(),
                disk_warning=services.disk_warning(), parts=parts, verdict=verdict_line(services),
                bundled=bundled_present(services.settings.models_dir))
    if info["loaded"]:
        meta = services.engine.metadata
        info["kv_bytes_per_token"] = {t: kv_bytes_per_token(meta, t, t) for t in KV_TYPE_BYTES}
    names = {d.doc_id: d.name for d in services.documents.list(owner)}
    info["cached_documents"] = [
        {"doc_ids": list(ids), "names": [names.get(i, i) for i in ids], "tokens": e.n_tokens, "bytes": e.state_bytes}
        for ids, e in services.caches.cached(owner).items()
    ]
    elsewhere = remote is not None or services.chat.replicas is not None  # answers are computed there
    info["message"] = (services.model_error or HOW_TO_GET_A_MODEL) if not info["loaded"] and not elsewhere else ""
    return info if admin else for_user(services, owner, info)


HOW_TO_CALIBRATE = ("no calibration for this model: its answers show ◐ and their sources, never ✓ or the "
                    "verdict's ⚠. To calibrate it (11-14 min on 2 cores for a 0.1-0.5B model): "
                    "`python -m backend.grounding.calibrate --model FILE`, which writes "
                    "models/calibrations/NAME.json; the next answer uses it")


def verdict_line(services: Services) -> str:
    """What the ✓ and ⚠ marks mean for the answering model: its calibration's summary, or how to make one."""
    found = services.grounder.calibration()
    return found.summary() if found is not None else HOW_TO_CALIBRATE


def for_user(services: Services, owner: str, info: dict) -> dict:
    """``status`` as a non-admin sees it: ``ADMIN_ONLY`` left out, the backend named by its kind, cache counts of
    the owner's own entries (``caches``: ``{"yours": {"entries", "bytes"}}``), and a message without a path."""
    out = {k: v for k, v in info.items() if k not in ADMIN_ONLY}
    out["backend"] = ("llama-server replicas" if "replicas" in info else "a remote OpenAI-compatible server"
                      if "remote" in info else "local llama.cpp (in-process)")
    own = services.caches.list(owner)
    out["caches"] = {"yours": {"entries": len(own), "bytes": sum(c.bytes for c in own)}}
    if out["message"]:
        out["message"] = "No model is loaded; ask an admin to load one in the Model panel."
    return out


def replica_status(services: Services) -> list[dict]:
    """Each replica as ``model_status`` lists it: url, up, model, slots, n_ctx, build, error, and ``matches``:
    whether its cache fingerprint is the app's (same model file, flash attention, KV types and streams as the
    app's settings), with ``mismatch`` saying what differs."""
    s, caches = services.settings, services.chat.replicas
    wanted = {"model_sha256": caches.model_sha256, "flash_attn": s.flash_attn, "type_k": s.type_k, "type_v": s.type_v,
              "n_stream": s.n_seq_max or AUTO_SLOTS}
    out = []
    for r in caches.pool.status():
        fp = r.pop("fingerprint")
        differs = [k for k, v in wanted.items() if fp.get(k) != v] if fp else ["no kvc-* tags"]
        out.append({**r, "matches": not differs, "mismatch": ", ".join(differs)})
    return out


def kv_size_line(info: dict) -> str:
    """What the KV dtype costs per token and for a full context, and what the other dtype would."""
    per = info["kv_bytes_per_token"]
    now = info["type_k"]
    full = human_bytes(per[now] * info["n_ctx"])
    others = ", ".join(f"{t}: {human_bytes(b)}/token" for t, b in per.items() if t != now)
    return (f"KV state: {human_bytes(per[now])}/token, {full} for a full context, "
            f"{info.get('n_seq_max', 1)} sequences allocated ({others})")


def model_choices(services: Services) -> list[tuple[str, str]]:
    """(label, path) for every listed GGUF: name, architecture, parameters, quantization, context, vision
    projector (when one goes with it), size."""
    out = []
    for m in services.models.list():
        size = f"{m.parameters / 1e9:.2f}B" if m.parameters >= 1e9 else f"{m.parameters / 1e6:.1f}M"
        facts = (f"{m.architecture} · {size} params · {m.quantization} · "
                 f"ctx {m.context_length:,}") if not m.error else f"unusable: {m.error}"
        if m.projector is not None and not m.error:
            facts += f" · vision ({m.projector.name})"
        out.append((f"{m.path.name} — {facts} · {human_bytes(m.size_bytes)}", str(m.path)))
    loaded = services.engine.model_path
    if loaded is not None and str(loaded) not in {path for _, path in out}:
        out.insert(0, (f"{loaded.name} (loaded from {loaded.parent})", str(loaded)))
    return out


def status_markdown(info: dict) -> str:
    """Render ``status`` as Markdown."""
    offload = "yes" if info["gpu_offload_supported"] else "no (CPU-only build)"
    caches = info["caches"]
    tiers = " · ".join(f"{tier} {c['entries']} entries, {human_bytes(c['bytes'])} of {human_bytes(c['budget_bytes'])}"
                       for tier, c in caches.items())
    bundled = "; ".join(f"{b['file']} ({human_bytes(b['bytes'])}): {b['origin']} {b['measured']}".rstrip()
                        for b in info.get("bundled", []))
    process = (f"- backend: {info['backend']}\n- verdict: {info['verdict']}\n- bundled offline models, the first "
               f"is the fallback: {bundled or 'none'}\n- process RSS {human_bytes(info['rss_bytes'])}, up "
               f"{info['uptime_s'] / 60:.0f} min, {info['queued_turns']} chat turns running or queued\n"
               f"- KV caches: {tiers}\n- loaded behind the first screen: "
               + " · ".join(f"{PART_LABELS.get(k, k)} {v}" for k, v in info["parts"].items()))
    if "replicas" in info:
        up = sum(r["up"] for r in info["replicas"])
        lines = [f"- `{r['url']}`: " + (f"up · {r['model']} · {r['slots']} slots of {r['n_ctx']:,} tokens · "
                                         + ("caches match" if r["matches"] else f"caches do NOT match ({r['mismatch']})")
                                         if r["up"] else f"DOWN ({r['error']})") for r in info["replicas"]]
        head = f"**Answers come from {up} of {len(info['replicas'])} llama-server replicas**\n\n" + "\n".join(lines)
    elif "remote" in info:
        reach = "reachable" if info["remote"]["reachable"] else "NOT reachable: check that it runs"
        head = f"**Answers come from a remote server ({reach})**"
    elif not info["loaded"]:
        head = f"**{info['message']}**\n\n- GPU offload in this llama.cpp build: {offload}"
    else:
        sees = (f"\n- vision: yes, projector `{info['projector']}` (attach images in the chat box)"
                if info.get("projector") else "\n- vision: no (text only; a GGUF with its mmproj file beside it sees images)")
        head = (f"**{info['model']}**: {expectation(info['parameters'])}\n\n"
                f"- `n_ctx`: {info['n_ctx']:,} tokens per sequence · `n_seq_max` {info['n_seq_max']} (answers "
                f"decoded together) · `n_batch` {info['n_batch']} · `n_ubatch` {info['n_ubatch']}"
                f" · `n_gpu_layers` {info['n_gpu_layers']}: {info['offloaded_layers']} of {info['n_layers']} layers"
                " on the GPU"
                f"\n- GPU offload in this llama.cpp build: {offload}\n- KV dtype: {info['type_k']}/{info['type_v']},"
                f" `flash_attn`: {info['flash_attn']}\n- threads: `n_threads` {info['n_threads']} (decode), "
                f"`n_threads_batch` {info['n_threads_batch']} (prefill) · `use_extra_bufts` {info['use_extra_bufts']}"
                f" · preflight: {info['preflight']}\n- {kv_size_line(info)}\n- CAG limit: Auto reads documents up to "
                f"{info['cag_limit']} whole, longer ones by retrieval (`KVC_CAG_MAX_TOKENS`)"
                f"{sees}\n- loaded in {info['load_seconds']:.2f} s"
                f" at {time.strftime('%H:%M:%S', time.localtime(info['loaded_at']))}")
    if info.get("disk_warning"):
        head = f"⚠️ **{info['disk_warning']}**\n\n{head}"
    cached = info["cached_documents"]
    lines = [f"- {', '.join(c['names'])}: {c['tokens']:,} tokens, {human_bytes(c['bytes'])}" for c in cached]
    return f"{head}\n{process}\n\n**Cached documents**\n\n" + ("\n".join(lines) if lines else "none yet")


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
        local = gr.Dropdown(label="Local GGUF files (models/ and extra_model_dirs)", choices=model_choices(services),
                            value=str(services.engine.model_path or services.starting_model or "") or None,
                            allow_custom_value=True, scale=4)
        n_ctx = gr.Number(s.n_ctx, label="n_ctx", precision=0, minimum=256, scale=1,
                          info="capped at the model's context length")
        n_gpu_layers = gr.Number(s.n_gpu_layers, label="n_gpu_layers", precision=0, minimum=-1, scale=1,
                                 info="-1 = all; ignored by CPU builds")
        kv_type = gr.Dropdown(list(KV_TYPE_BYTES), value=s.type_k, label="KV dtype (type_k/type_v)", scale=1,
                              info="Compact caches: q8_0 halves the KV bytes, q4_0 quarters them; on a 2-core CPU a 6k-token "
                                   "prefill takes 2.2x / 3.8x f16's time (SmolLM2, n_ctx 8192); both need flash_attn.")
        flash = gr.Checkbox(s.flash_attn, label="flash_attn", scale=1)
        extra_bufts = gr.Checkbox(s.use_extra_bufts, label="use_extra_bufts", scale=1,
                                  info="AMX / repacked weights; turned off by itself if the model crashes with it")
    with gr.Row():
        load_btn = gr.Button("Load", variant="primary")
        unload_btn = gr.Button("Unload")
        restart_btn = gr.Button("Restart (keep KV caches)")
        reset_btn = gr.Button("Restart and clear this model's KV caches", variant="stop")
    with gr.Row():
        recommended = gr.Dropdown([(m.about, i) for i, m in enumerate(RECOMMENDED_MODELS)], value=None, scale=3,
                                  label="Recommended small models (run on a laptop CPU)")
        repo = gr.Textbox(label="Hugging Face repo", value=s.hf_repo_id, scale=2)
        filename = gr.Textbox(label="File or quant pattern", value=s.hf_filename, scale=2,
                              info="a .gguf name, or e.g. Q4_K_M to pick the one matching file")
        download_btn = gr.Button("Download and load", scale=1)

    def current(request: gr.Request) -> str:
        if not is_admin(services, request):  # the panel is hidden from them; its text tells nothing either
            info = status(services, owner_of(request), admin=False)
            return f"**{info['model']}** answers." if info["loaded"] else info["message"]
        return status_markdown(status(services, owner_of(request)))

    def load(path: str | None, ctx: float, gpu_layers: float, kv: str, flash_attn: bool, bufts: bool,
             request: gr.Request, progress=gr.Progress()):
        require_admin(services, request)
        if not path:
            raise gr.Error("Choose a .gguf file first.")
        progress(0.1, desc=f"Loading {Path(path).name}: a new file is first tried in a child process (the "
                           "preflight), then llama.cpp maps it")
        with user_errors():
            services.models.load(Path(path), n_ctx=int(ctx), n_gpu_layers=int(gpu_layers), type_k=kv, type_v=kv,
                                flash_attn=bool(flash_attn), use_extra_bufts=bool(bufts))
        return current(request)

    def restart(reset: bool, request: gr.Request, progress=gr.Progress()):
        require_admin(services, request)
        name = services.engine.model_path.name if services.engine.model_path else "the model"
        progress(0.1, desc=f"Restarting {name}" + (" and clearing its KV caches" if reset else "") +
                 " (waits for the answers in flight)")
        with user_errors():
            cleared = services.models.restart(reset)
        if reset:
            gr.Info(f"Restarted; {cleared} KV cache entr{'y' if cleared == 1 else 'ies'} cleared.")
        return current(request)

    def unload(request: gr.Request):
        require_admin(services, request)
        services.engine.unload()
        return current(request)

    def fetch(repo_id: str, name: str, request: gr.Request, progress=gr.Progress()):
        require_admin(services, request)
        progress(0, desc=f"Looking up {name}")

        def report(done: int, total: int) -> None:
            progress(done / total, desc=f"Downloading {name}: {human_bytes(done)} of {human_bytes(total)}")

        projector = next((r.projector for r in RECOMMENDED_MODELS
                          if (r.repo_id, r.filename) == (repo_id.strip(), name.strip()) and r.projector), "")
        with user_errors():
            path = download(repo_id.strip(), name.strip(), s.models_dir, progress=report)
            if projector:  # a vision model's projector goes beside it; loading pairs them
                name = projector
                download(repo_id.strip(), projector, s.models_dir, progress=report)
            progress(1, desc="Loading")
            services.models.load(path)
        return current(request), gr.Dropdown(choices=model_choices(services), value=str(path))

    llm = {"concurrency_id": "llm", "concurrency_limit": 1, "api_visibility": "private"}
    load_btn.click(load, [local, n_ctx, n_gpu_layers, kv_type, flash, extra_bufts], [info_box], **llm)
    unload_btn.click(unload, None, [info_box], **llm)
    restart_btn.click(restart, gr.State(False), [info_box], **llm)
    reset_btn.click(restart, gr.State(True), [info_box], **llm)
    recommended.change(lambda i: (RECOMMENDED_MODELS[i].repo_id, RECOMMENDED_MODELS[i].filename) if i is not None
                       else (gr.skip(), gr.skip()), recommended, [repo, filename], api_visibility="private")
    download_btn.click(fetch, [repo, filename], [info_box, local], concurrency_id="llm", concurrency_limit=1,
                       api_visibility="private")
    return ModelsPanel(info_box=info_box, refresh=current)
