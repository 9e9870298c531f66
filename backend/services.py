"""The long-lived objects of the app, built once at start and closed at shutdown."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from backend.access import Quotas, QuotaSettings, Users
from backend.chat import ChatService, MemoryIndex, Primer, SessionError, SessionStore, describe_image, sweep_images
from backend.config import Settings
from backend.documents import DocumentService, Embedder, PageOcr, Recovery, Store
from backend.grounding import Grounder, SourceViewer
from backend.inference import (
    Engine,
    EngineError,
    LoadParams,
    ModelInfo,
    NoModelLoaded,
    Preflight,
    RemoteEngine,
    ReplicaPool,
    RunLogs,
    Sampling,
    Scheduler,
    bundled_path,
    find_projector,
    list_models,
    model_identity,
    pick_model,
)
from backend.kvcache import (
    CacheCatalog,
    KVCacheStore,
    Prefetcher,
    ReplicaCaches,
    SessionSnapshots,
    SlotFiles,
    slot_files_unsupported,
)
from backend.storage import EmbeddedRedis, low_space_warning, open_layout

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the UI handlers call into.

    Attributes:
        settings: the configuration.
        engine: the llama.cpp model owner.
        kv_store: KV cache files.
        sessions: Redis session store.
        documents: ingestion and document lifecycle.
        chat: chat turns.
        primer: document priming (the Cache button, prime on upload) and prefetch.
        caches: the user's view of the KV-cache entries (list, delete, which documents are cached).
        grounder: answers' sources and grounding verdicts.
        viewer: opens a cited passage (the PDF page with the quote marked, the text around it).
        embedder: sentence-transformers (loaded on first use, or by ``warm_up``).
        redis_server: the embedded server, or None with ``REDIS_URL``.
        run_logs: one log file per model run (llama.cpp's log and the app's).
        model_error: why the start-up model did not load, if it didn't.
        users: the local accounts (sign-in is on when there are any).
        quotas: per-user rate limits and quotas (Redis).
        warming: the start-up warm-up's thread while it runs (``warm_up``), else None.
        starting_model: the model the app loads at start (None: none found, or answers come from elsewhere).
        model_loading: with ``serve_first``, the thread loading ``starting_model`` (``wait_for_model``).
    """

    settings: Settings
    engine: Engine
    kv_store: KVCacheStore
    sessions: SessionStore
    documents: DocumentService
    chat: ChatService
    primer: Primer
    caches: CacheCatalog
    grounder: Grounder
    viewer: SourceViewer
    embedder: Embedder
    redis_client: redis.Redis
    redis_server: EmbeddedRedis | None
    run_logs: RunLogs
    model_error: str | None = None
    users: Users | None = None
    quotas: Quotas | None = None
    warming: threading.Thread | None = None
    starting_model: Path | None = None
    model_loading: threading.Thread | None = None

    def wait_for_model(self) -> None:
        """Wait until the start-up model is loaded (or failed: ``model_error`` says why)."""
        if self.model_loading is not None:
            self.model_loading.join()
            self.model_loading = None

    def _load_starting_model(self, attach: bool) -> None:
        try:
            self.load_model(self.starting_model, attach=attach)
        except EngineError as exc:
            self.model_error = str(exc)
            log.warning("start-up model not loaded: %s", exc)

    @property
    def store(self) -> Store:
        """The LanceDB tables (opened, and checked after a crash, on first use: ``DocumentService.open``)."""
        return self.documents.store

    @property
    def recovery(self) -> Recovery:
        """What the start-up check of the documents found and repaired after a crash (runs it if it has not run)."""
        return self.documents.open()

    def warm_up(self) -> threading.Thread:
        """Load, one after the other in a background thread, what the first screen does not need: the documents'
        index (and its start-up check), the embedding model, the OCR engine, the loaded model's vision projector.
        A request that needs one of them sooner loads it itself or waits for it (``Once``); ``readiness`` says
        where each stands.

        Returns:
            The thread (also in ``warming`` until it ends).
        """
        def run() -> None:
            steps = [("the documents' index", self.documents.open), ("the embedding model", self.embedder.load)]
            if self.documents.ocr is not None:
                steps.append(("the OCR engine", self.documents.ocr.load))
            steps.append(("the vision projector", self.attach_projector))
            for what, step in steps:
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 (each part says why in readiness and when it is used)
                    log.warning("warm-up: %s did not load: %s", what, exc)
            self.warming = None
            log.info("warm-up done: %s", self.readiness())

        self.warming = threading.Thread(target=run, name="warm-up", daemon=True)
        self.warming.start()
        return self.warming

    def readiness(self) -> dict[str, str]:
        """Where each part the first screen does not need stands: ``documents`` (the LanceDB index), ``embedder``,
        ``ocr``, each ``waiting``, ``loading``, ``ready (seconds)`` or ``failed: why``; ``off`` when not used."""
        return {"documents": self.documents.index_state, "embedder": self.embedder.state,
                "ocr": self.documents.ocr.state if self.documents.ocr is not None else "off"}

    def model_dirs(self) -> list[Path]:
        """The folders a model may be loaded from: ``models_dir``, the bundled model's, ``extra_model_dirs``."""
        s = self.settings
        return [s.models_dir, bundled_path(s.models_dir).parent, *s.extra_model_dirs]

    def allowed_model(self, path: Path) -> Path:
        """Check that a file to load lies in the model folders (or is the configured ``model_path``).

        Args:
            path: the requested GGUF file, as given by a user.

        Returns:
            The resolved path.

        Raises:
            EngineError: it lies elsewhere; no path outside the model folders is ever opened on request.
        """
        resolved = Path(path).expanduser().resolve()
        configured = self.settings.model_path
        if configured is not None and resolved == Path(configured).expanduser().resolve():
            return resolved
        if any(resolved.is_relative_to(d.expanduser().resolve()) for d in self.model_dirs()):
            return resolved
        raise EngineError(f"Models load only from the model folders ({', '.join(str(d) for d in self.model_dirs())}); "
                          "put the file there or add its folder to KVC_EXTRA_MODEL_DIRS.")

    def load_params(self) -> LoadParams:
        """llama.cpp settings from the configuration."""
        s = self.settings
        return LoadParams(n_ctx=s.n_ctx, n_gpu_layers=s.n_gpu_layers, n_batch=s.n_batch, n_ubatch=s.n_ubatch,
                          n_threads=s.n_threads,
                          n_threads_batch=s.n_threads_batch, flash_attn=s.flash_attn, type_k=s.type_k, type_v=s.type_v,
                          use_mmap=s.use_mmap, use_mlock=s.use_mlock, use_extra_bufts=s.use_extra_bufts,
                          n_seq_max=s.n_seq_max)

    def load_model(self, path: Path, attach: bool = True, **overrides) -> None:
        """Load a model with the configured settings.

        Args:
            path: the GGUF file; it must lie in the model folders or be ``model_path`` (``allowed_model``).
            attach: attach its vision projector now (``attach_projector``); at start-up the warm-up does it.
            overrides: ``LoadParams`` fields to change for this load (e.g. ``type_k="q8_0"``).

        Raises:
            EngineError: a path outside the model folders, or see ``Engine.load``.
        """
        path = self.allowed_model(path)
        self.run_logs.start(path.name)
        self.engine.load(path, dataclasses.replace(self.load_params(), **overrides))  # preflight outside the lock
        if attach:
            self.attach_projector()
        self.model_error = None

    def attach_projector(self) -> None:
        """Attach the loaded model's vision projector when its folder holds one that fits
        (``find_projector``) and the preflight's probe image passed; a projector that failed there, or that
        libmtmd refuses here, is logged and the model answers text only."""
        if not self.engine.loaded or self.engine.projector is not None:
            return
        projector = find_projector(self.engine.model_path)
        if projector is None:
            return
        checked = self.engine.last_preflight
        if checked is not None and not checked.vision:  # it crashed or was refused in the preflight's child
            log.warning("vision projector %s not attached: %s", projector.name, checked.message)
            return
        try:
            self.engine.attach_projector(projector)
        except EngineError as exc:
            log.warning("vision projector %s not attached: %s", projector.name, exc)

    def list_models(self) -> list[ModelInfo]:
        """The GGUF files in ``models_dir`` and ``extra_model_dirs``, described from their headers."""
        return list_models(self.model_dirs())

    def restart_model(self, reset: bool) -> int:
        """Close and reopen the loaded model with the same settings (the original ``up/without_reset``
        and ``up/reset``).

        Args:
            reset: also delete this model's KV caches, RAM and disk, and the session snapshots,
                so every prefix is computed again. Without it the caches stay and the next
                answer reuses them.

        Returns:
            How many disk cache entries were deleted (0 without reset).

        Raises:
            NoModelLoaded: nothing to restart.
            EngineError: the reopen failed.
        """
        with self.engine.lock:
            if not self.engine.loaded:
                raise NoModelLoaded()
            path, params = self.engine.model_path, self.engine.params
            cleared = 0
            if reset:
                cleared = self.kv_store.delete_for_model(model_identity(path))
                self.chat.snapshots.clear()
            self.run_logs.start(path.name)
            self.engine.load(path, params)
            self.attach_projector()
        log.info("restarted %s (reset=%s, %d cache entries cleared)", path.name, reset, cleared)
        return cleared

    def disk_warning(self) -> str | None:
        """A sentence when the data dir's disk is nearly full (below twice ``disk_reserve_mb`` free), else None."""
        return low_space_warning(self.settings.data_dir, int(self.settings.disk_reserve_mb * 2**20))

    def close(self) -> None:
        """Shut down cleanly: answers in flight finish (for up to ``shutdown_grace_s``, then they are
        stopped and saved as partial), the batch scheduler stops, the model is freed, and the embedded
        Redis saves and stops."""
        self.wait_for_model()
        self.chat.drain(self.settings.shutdown_grace_s)
        self.chat.scheduler.close()
        self.engine.unload()
        if self.chat.remote is not None:
            self.chat.remote.close()
        if self.chat.replicas is not None:
            self.chat.replicas.pool.close()
        self.run_logs.close()
        try:
            self.redis_client.close()
        finally:
            if self.redis_server is not None:
                self.redis_server.stop()


def redis_retry() -> Retry:
    """How Redis commands ride out an outage: 6 retries with exponential backoff from 0.1 s, capped at
    1 s (about 3.5 s in all), which covers the embedded server being started again by its watcher
    (``EmbeddedRedis``); a longer outage ends the command with the store's one-sentence error."""
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), 6)


def _sweep_images(settings: Settings, sessions: SessionStore, started: float) -> None:
    """Delete the chat images no stored message refers to any more (``sweep_images``), those kept before
    ``started`` (Unix seconds) only; logged. Runs once per start, in its own thread."""
    try:
        gone = sweep_images(settings.path("images"), sessions.image_names(), started)
    except SessionError as exc:
        log.warning("chat images not swept: %s", exc)
        return
    if gone:
        log.info("swept %d chat images no message refers to", gone)


def _remote(settings: Settings, engine: Engine, kv_store: KVCacheStore,
            model: Path | None) -> tuple[RemoteEngine | None, ReplicaCaches | None]:
    """Where answers are computed when ``remote_base_url`` is set: llama-server replicas when the model file they
    serve is here too (its vocabulary is loaded, ``Engine.load_vocab``: prompts go as token ids, prefixes to slot
    files in ``remote_slot_dir``), else one OpenAI-compatible server (chat messages; its own prefix cache).

    Returns:
        ``(remote, replicas)``: at most one of them set; both None for the in-process engine.
    """
    if not settings.remote_base_url:
        return None, None
    if model is None:
        return (RemoteEngine(settings.replica_urls[0], settings.remote_api_key, settings.remote_model,
                             settings.remote_n_ctx), None)
    try:
        engine.load_vocab(model, settings.n_ctx)
    except EngineError as exc:
        log.warning("%s Answering through %s as a plain OpenAI-compatible server.", exc, settings.replica_urls[0])
        return (RemoteEngine(settings.replica_urls[0], settings.remote_api_key, settings.remote_model,
                             settings.remote_n_ctx), None)
    unsupported = slot_files_unsupported(engine.metadata)
    if unsupported:
        log.warning("no slot files for %s: %s", model.name, unsupported)
    slots = (SlotFiles(settings.remote_slot_dir, int(settings.remote_slot_budget_mb * 2**20), kv_store.pins.holds)
             if settings.remote_slot_dir and not unsupported else None)
    pool = ReplicaPool(settings.replica_urls, settings.remote_api_key)
    log.info("answers come from %d llama-server replicas (%s); slot files %s", len(pool.replicas),
             ", ".join(r.url for r in pool.replicas), settings.remote_slot_dir if slots else "off")
    return None, ReplicaCaches(pool, slots, kv_store, model_identity(model), unsupported)


def build_services(settings: Settings, embedder: Embedder | None = None, *, serve_first: bool = False) -> Services:
    """Create every long-lived object, start Redis when embedded, and load the model if one is found: what the
    first screen needs. The rest (the documents' index and its start-up check, the embedding model, OCR, the
    vision projector) loads on first use, or ahead of it with ``Services.warm_up``.

    Args:
        settings: the configuration.
        embedder: an embedding model to share (tests, several apps in one process); default: a new one,
            loaded on first use.
        serve_first: load the model in a thread (``wait_for_model``), while the caller builds the UI, and leave its
            vision projector to ``warm_up`` (the app, which serves at once); otherwise both are loaded here.

    Returns:
        The services container. A model that fails to load leaves ``engine`` empty and the
        reason in ``model_error``; everything else still works.

    Raises:
        LayoutError: the data dir was written by a newer app (nothing in it is changed).
        RuntimeError: the embedded Redis did not start.
    """
    open_layout(settings.data_dir)  # migrate an older data dir forward, or refuse a newer one, before opening it
    server = None
    url = settings.redis_url
    if not url:
        server = EmbeddedRedis(settings.path("redis"), appendfsync=settings.redis_appendfsync)
        url = server.start()
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, retry=redis_retry(),
                                  retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    embedder = embedder or Embedder(settings.embedding_model, settings.embed_batch_size, load_now=False)
    engine = Engine(Preflight(settings.path("preflight"), settings.preflight_timeout_s))
    reserve = int(settings.disk_reserve_mb * 2**20)
    kv_store = KVCacheStore(settings.path("kvcache"), int(settings.kv_disk_budget_mb * 1024 * 1024),
                            int(settings.kv_ram_budget_mb * 1024 * 1024), reserve)
    sessions = SessionStore(client, settings.session_ttl_s)
    describing = Sampling(max_tokens=settings.describe_max_tokens, temperature=0.0, ignore_eos=settings.ignore_eos)

    def drop_derived(doc_id: str) -> None:  # a document's text changed or it was deleted: drop what came of it
        kv_store.delete_for_document(doc_id)
        grounder.drop(doc_id)

    documents = DocumentService(settings.path("uploads"),
                                lambda: Store(settings.path("lancedb"), embedder.dim, embedder.name), embedder,
                                max_upload_bytes=settings.max_upload_bytes, chunk_tokens=settings.chunk_tokens,
                                overlap_tokens=settings.chunk_overlap_tokens, count_tokens=engine.count_tokens,
                                drop_derived=drop_derived, ocr=PageOcr() if settings.ocr else None,
                                disk_reserve_bytes=reserve, max_image_pixels=settings.max_image_pixels,
                                describe=lambda image: describe_image(engine, scheduler, image, describing))
    grounder = Grounder(documents)
    model = pick_model(settings.model_path, settings.models_dir, settings.hf_filename, bundled_path(settings.models_dir))
    remote, replicas = _remote(settings, engine, kv_store, model)
    if settings.remote_slot_dir and not settings.remote_base_url:  # replicas' saved prefixes, restored in-process
        kv_store.slots = SlotFiles(settings.remote_slot_dir, int(settings.remote_slot_budget_mb * 2**20),
                                   kv_store.pins.holds)
    scheduler = Scheduler(engine, settings.prefill_chunk_tokens)
    snapshots, prefetcher = SessionSnapshots(kv_store.ram), Prefetcher(scheduler)
    chat = ChatService(settings, engine, kv_store, sessions, documents, snapshots, prefetcher, grounder, remote,
                       MemoryIndex(documents, embedder), replicas)
    primer = Primer(settings, engine, kv_store, sessions, documents, snapshots, prefetcher, chat.planner, remote,
                    replicas)
    caches = CacheCatalog(kv_store, engine, documents, replicas.slots if replicas else kv_store.slots)
    services = Services(settings, engine, kv_store, sessions, documents, chat, primer, caches, grounder,
                        SourceViewer(documents, documents.ocr), embedder, client, server, RunLogs(settings.path("logs") / "runs"), users=Users(settings.users_path),
                        quotas=Quotas(url, client, QuotaSettings(
                            settings.questions_per_minute, settings.uploads_per_day,
                            int(settings.quota_stored_mb * 2**20), settings.quota_documents,
                            settings.max_concurrent_turns)))
    threading.Thread(target=_sweep_images, args=(settings, sessions, time.time()), name="sweep-images",
                     daemon=True).start()
    if model is not None and remote is None and replicas is None:  # remote servers compute, not this process
        services.starting_model = model
        if serve_first:  # llama.cpp maps the file (the GIL released) while the caller builds the UI
            services.model_loading = threading.Thread(target=services._load_starting_model, args=(False,),
                                                      name="load-model", daemon=True)
            services.model_loading.start()
        else:
            services._load_starting_model(True)
    return services
