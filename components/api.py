"""The named API endpoints (``gradio_client`` and MCP): the app's programmatic interface.

With ``--mcp`` Gradio serves every public endpoint as an MCP tool (streamable HTTP at
``/gradio_api/mcp/``); its description and parameter descriptions come from the docstrings below (and in
``api_documents`` for documents and caches).

Each endpoint calls the same backend services as the UI; backend errors arrive as
``gr.Error`` carrying the same sentence the UI shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import gradio as gr
from gradio import FileData

from backend.chat import SessionNotFound
from backend.chat import export_session as export_session_as
from backend.services import Services
from components import api_documents
from components.common import is_admin, owner_of, question_slot, require_admin, user_errors
from components.guard import api
from components.models import status

Mode = Literal["auto", "cag", "rag"]
LOAD_RANGES = {"n_ctx": (0, 1 << 24), "n_gpu_layers": (-1, 10_000), "n_batch": (0, 1 << 20), "n_threads": (0, 1024),
               "n_threads_batch": (0, 1024)}  # 0 (or null) takes the configured setting


def image_input(item: dict | str) -> str:
    """One of the chat endpoint's images as the backend reads it (``load_images``): Gradio file data (what
    ``gradio_client.handle_file`` sends; Gradio has already taken the upload into its cache and refuses any path
    a client did not upload) as that cached file's path, a data URL as it is.

    Raises:
        gr.Error: a bare path or anything else, which is never read.
    """
    if isinstance(item, dict) and item.get("path") and (item.get("meta") or {}).get("_type") == "gradio.FileData":
        return str(item["path"])
    if isinstance(item, FileData):
        return str(item.path)
    if isinstance(item, str) and item.startswith("data:"):
        return item
    raise gr.Error("Send images as files (gradio_client's handle_file(\"photo.png\")) or as data URLs "
                   "(data:image/png;base64,...); a path on the server is not read.", print_exception=False)


def render(services: Services) -> None:
    """Register every API endpoint (no visible UI): the document and cache ones (``api_documents``), then chat,
    sessions and the model."""
    api_documents.render(services)

    def create_session(request: gr.Request) -> str:
        """Create an empty chat session; returns its session_id."""
        with user_errors():
            return services.sessions.create(owner_of(request))

    def chat(session_id: str, message: str, doc_ids: list[str], mode: Mode = "auto", thinking: bool | None = None,
             web: bool | None = None, remember: bool | None = None, images: list[FileData | str] | None = None,
             request: gr.Request = None) -> Iterator[dict]:
        """Ask a question about documents and get the model's answer with its sources and metrics.

        Streams {"text", "thinking", "done"}, with "queued" (place in line, 1 = next) while every sequence is
        busy. The last value adds "metrics" (mode and mode_reason, TTFT, reused tokens, cache tier, grounding,
        attribution_s), "sources" (the passages that support the answer, best first: doc_id, name, page,
        section, part, start and end as character offsets into that page's text, quote), "grounding"
        ("supported", "partial" or "not_found"; null without documents), "grounding_note" (why not found),
        "closest" (for a not_found answer, the passage closest to the question, or null) and "retrieved"
        (the chunks a retrieval answer read). "thinking" carries the <think> text, which history leaves out.
        The turn is saved in the session's history with all of these.

        Args:
            session_id: the chat session (from create_session or list_sessions).
            message: the question.
            doc_ids: the documents to answer from (ids from list_documents); empty for none.
            mode: "auto" (whole documents when they fit n_ctx and what the model reads well whole, else
                retrieval; metrics.mode_reason says which and why), "cag" or "rag" to force one.
            thinking: true/false switches a thinking model (Qwen3) on or off; null keeps its default.
            web: true/false searches the web (SearXNG) or not; null searches when the question is time-sensitive.
            remember: recall the user's related questions from other sessions; null uses the app's setting.
            images: images to ask about (PNG, JPEG, WebP, GIF), at most KVC_MAX_IMAGES_PER_MESSAGE: files, as
                gradio_client sends them (handle_file("photo.png")), or data URLs ("data:image/png;base64,..."). They need a vision model (a GGUF with its mmproj file);
                metrics.image_tokens and metrics.image_encode_s say what they cost (0 s when reused).

        Returns:
            text (the answer), done, metrics, sources, grounding, grounding_note, closest, retrieved, web_sources.
        """
        owner = owner_of(request)
        pictures = [image_input(i) for i in images or []]
        text, thought = "", ""
        with user_errors(), question_slot(services, request):
            for event in services.chat.stream_turn(owner, session_id, message, list(doc_ids or []),
                                                   mode=mode or "auto", thinking=thinking, web=web,
                                                   remember=remember, images=pictures):
                if event.kind == "token":
                    text += event.text
                elif event.kind == "thinking":
                    thought += event.text
                if event.kind in ("token", "thinking"):
                    yield {"text": text, "thinking": thought, "done": False}
                elif event.kind == "queued":
                    yield {"text": text, "thinking": thought, "done": False, "queued": event.data["place"]}
                elif event.kind == "done":
                    yield {"text": event.text, "thinking": thought, "done": True, **event.data}

    def prefetch(session_id: str, doc_ids: list[str], mode: Mode = "auto", request: gr.Request = None) -> dict:
        """Get the prefix of these documents, or the session's snapshot, into the model's context
        (restored, or prefilled and saved) so the next chat call evaluates only the question.
        Waits for it and returns {"outcome": done|preempted|busy|failed|no_model, "tier", "tokens"};
        a chat for another session preempts it.

        Args:
            session_id: the session whose next turn this prepares; "" for none.
            doc_ids: the documents of the next turn.
            mode: "auto", "cag" or "rag".
        """
        with user_errors():
            job = services.primer.prefetch(owner_of(request), session_id or None, list(doc_ids or []), mode or "auto")
        if job is None:
            return {"outcome": "no_model", "tier": None, "tokens": 0}
        job.wait()
        result = job.result
        return {"outcome": job.outcome, "tier": result.tier if result else None,
                "tokens": (result.snapshot_tokens or result.n_tokens) if result else 0}

    def get_history(session_id: str, request: gr.Request) -> dict:
        """Get a chat session's messages (answers carry their metrics and sources) and timestamps.

        Args:
            session_id: the session's id (from list_sessions).
        """
        with user_errors():
            return asdict(services.sessions.get(owner_of(request), session_id))

    def list_sessions(request: gr.Request) -> list[dict]:
        """The user's sessions, most recently updated first: session_id, title, created_at, last_updated."""
        with user_errors():
            return [{k: v for k, v in asdict(s).items() if k != "messages"}
                    for s in services.sessions.list(owner_of(request))]

    def rename_session(session_id: str, title: str, request: gr.Request) -> dict:
        """Rename a session; returns {"session_id", "title"}.

        Args:
            session_id: the session's id.
            title: the new title.
        """
        with user_errors():
            services.sessions.rename(owner_of(request), session_id, title)
            return {"session_id": session_id, "title": services.sessions.get(owner_of(request), session_id).title}

    def set_system_prompt(session_id: str, text: str, request: gr.Request) -> dict:
        """Give a session its own system prompt ("" = the configured one). The instructions start the
        cached prefix, so the session's documents are read again on its next question.

        Args:
            session_id: the session's id.
            text: the instructions; "" restores the configured ones.
        """
        with user_errors():
            services.sessions.set_system_prompt(owner_of(request), session_id, text or "")
            current = services.sessions.get(owner_of(request), session_id).system_prompt
        return {"session_id": session_id, "system_prompt": current or services.settings.system_prompt,
                "custom": bool(current)}

    def export_session(session_id: str, format: Literal["markdown", "json"] = "markdown",
                       request: gr.Request = None) -> dict:
        """A session as Markdown or JSON, with messages, sources and metrics: {"filename", "content"}.

        Args:
            session_id: the session's id.
            format: "markdown" or "json".
        """
        with user_errors():
            session = services.sessions.get(owner_of(request), session_id)
        try:
            filename, content = export_session_as(session, format or "markdown")
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return {"filename": filename, "content": content}

    def delete_session(session_id: str, request: gr.Request) -> dict:
        """Delete a session and its history.

        Args:
            session_id: the session's id.
        """
        with user_errors():
            if not services.sessions.delete(owner_of(request), session_id):
                raise SessionNotFound("That session does not exist or has expired; refresh the chat list.")
        services.chat.forget_session(owner_of(request), session_id)
        return {"session_id": session_id, "deleted": True}

    def list_models(request: gr.Request) -> list[dict]:
        """GGUF files in models_dir and extra_model_dirs, read from their headers without loading: name,
        size_bytes, architecture, parameters, quantization, context_length, has_chat_template, error (one
        sentence, "" when usable); for an admin also model_file, the path load_model takes."""
        admin = is_admin(services, request)
        out = []
        for m in services.models.list():
            row = {k: v for k, v in asdict(m).items() if k not in ("path", "projector")}
            row.update(name=m.path.name, projector=m.projector.name if m.projector else None)
            if admin:  # a plain string under a key gradio_client does not take for a file ("path" it would fetch)
                row["model_file"] = str(m.path)
            out.append(row)
        return out

    def load_model(path: str, n_ctx: int = 0, n_gpu_layers: int | None = None, n_batch: int = 0,
                   n_threads: int = 0, flash_attn: bool | None = None, type_k: str = "", type_v: str = "",
                   use_mmap: bool | None = None, use_mlock: bool | None = None, n_threads_batch: int = 0,
                   use_extra_bufts: bool | None = None, request: gr.Request = None) -> dict:
        """Load a GGUF (closing the current model first; if llama.cpp refuses the file the previous
        model is reopened). A new file is first run in a child process (the preflight): one that
        crashes llama.cpp is refused with one sentence and the current model keeps serving; one that
        crashes only with use_extra_bufts loads with it off. Settings left at 0, "" or null take the
        configured defaults; n_ctx is capped at the model's context length. Returns model_status()."""
        require_admin(services, request)
        given = {"n_ctx": n_ctx or None, "n_gpu_layers": n_gpu_layers, "n_batch": n_batch or None,
                 "n_threads": n_threads or None, "n_threads_batch": n_threads_batch or None, "flash_attn": flash_attn,
                 "type_k": type_k or None, "type_v": type_v or None, "use_mmap": use_mmap, "use_mlock": use_mlock,
                 "use_extra_bufts": use_extra_bufts}
        with user_errors():
            services.models.load(Path(path), **{k: v for k, v in given.items() if v is not None})
        return status(services, owner_of(request))

    def unload_model(request: gr.Request) -> dict:
        """Free the model and its context (the original "down"); KV caches stay. Returns model_status()."""
        require_admin(services, request)
        services.engine.unload()
        return status(services, owner_of(request))

    def restart_model(reset: bool = False, request: gr.Request = None) -> dict:
        """Close and reopen the model with the same settings (the original "up/without_reset" and
        "up/reset"). reset: also delete this model's KV caches (RAM and disk) and session snapshots.
        Returns model_status() plus cleared_caches."""
        require_admin(services, request)
        with user_errors():
            cleared = services.models.restart(bool(reset))
        return {**status(services, owner_of(request)), "cleared_caches": cleared}

    def list_log_runs(request: gr.Request = None) -> list[dict]:
        """One log file per model run, newest first: run_id, started_at (Unix s), size_bytes, current."""
        require_admin(services, request)
        return [asdict(r) for r in services.run_logs.runs()]

    def get_logs(run_id: str = "", level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO",
                 tail: int = 200, request: gr.Request = None) -> dict:
        """A model run's log (llama.cpp's own lines and the app's), level and above, last `tail` lines.
        run_id "" = the current run. Returns {"run_id", "lines"}."""
        require_admin(services, request)
        try:
            lines = services.run_logs.read(run_id or None, level or "INFO", int(tail))
        except ValueError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return {"run_id": run_id or services.run_logs.current, "lines": lines}

    def model_status(request: gr.Request) -> dict:
        """Loaded model, n_ctx, n_gpu_layers, GPU offload support and cached documents. An admin also gets the
        model's path, the replicas and the server's own figures; everyone else the model's name and their own
        cache counts."""
        return status(services, owner_of(request), is_admin(services, request))

    llm = {"concurrency_id": "chat", "concurrency_limit": None}  # the batch scheduler queues
    api(create_session, "create_session")
    api(chat, "chat", **llm)
    api(prefetch, "prefetch")
    api(get_history, "get_history")
    api(delete_session, "delete_session")
    api(list_sessions, "list_sessions")
    api(rename_session, "rename_session")
    api(export_session, "export_session")
    api(set_system_prompt, "set_system_prompt")
    api(model_status, "model_status")
    api(list_models, "list_models")
    api(list_log_runs, "list_log_runs")  # these five refuse non-admins (require_admin)
    api(get_logs, "get_logs", ranges={"tail": (0, 100_000)})
    api(load_model, "load_model", ranges=LOAD_RANGES, **llm)
    api(unload_model, "unload_model", **llm)
    api(restart_model, "restart_model", **llm)
