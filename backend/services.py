"""The composition root: the app's long-lived objects, built once at start in dependency order and closed at
shutdown. Each package builds its own parts (``storage.connect``, ``inference.ModelManager``,
``kvcache.remote_parts``, ``DocumentService``, ``ChatService``...); this module only orders and wires them."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from backend.access import Quotas, QuotaSettings, Users
from backend.chat import (
    ChatService,
    MemoryIndex,
    Primer,
    ReaderCheck,
    SessionError,
    SessionStore,
    describe_image,
    sweep_images,
)
from backend.config import Settings
from backend.documents import DocumentService, Embedder, PageOcr, Recovery, Store
from backend.grounding import Calibration, Grounder, SourceViewer, calibration_for
from backend.inference import (
    Engine,
    ModelManager,
    Preflight,
    RemoteEngine,
    RunLogs,
    Sampling,
    Scheduler,
    best_bundled,
    model_identity,
    pick_model,
)
from backend.kvcache import CacheCatalog, KVCacheStore, Prefetcher, SessionSnapshots, remote_parts
from backend.storage import EmbeddedRedis, Upkeep, connect, low_space_warning, open_layout, rewrite_redis_files

log = logging.getLogger(__name__)


@dataclass
class Services:
    """Everything the UI handlers call into.

    Attributes:
        settings: the configuration.
        engine: the llama.cpp model owner; ``models`` loads, lists and restarts models on it.
        kv_store / caches: the KV-cache files, and the user's view of them (list, delete, pin).
        sessions / chat / primer: Redis sessions, chat turns, priming and prefetch of document prefixes.
        documents / grounder / viewer: ingestion and queries, answers' sources and verdicts, the source viewer.
        embedder: sentence-transformers (loaded on first use, or by ``warm_up``).
        redis_client / redis_server: the client, and the embedded server (None with ``REDIS_URL``).
        run_logs: one log file per model run (llama.cpp's log and the app's).
        users / quotas: the local accounts (sign-in is on when there are any), per-user limits (Redis).
        upkeep: the clean-up after deletes and on an interval (``backend.storage.upkeep``).
        warming: the start-up warm-up's thread while it runs (``warm_up``), else None.
        starting_model: the model the app loads at start (None: none found, or answers come from elsewhere).
        model_loading: with ``serve_first``, the thread loading ``starting_model`` (``wait_for_model``).
    """

    settings: Settings
    engine: Engine
    models: ModelManager
    kv_store: KVCacheStore
    caches: CacheCatalog
    sessions: SessionStore
    chat: ChatService
    primer: Primer
    documents: DocumentService
    grounder: Grounder
    viewer: SourceViewer
    embedder: Embedder
    redis_client: redis.Redis
    redis_server: EmbeddedRedis | None
    run_logs: RunLogs
    users: Users
    quotas: Quotas
    upkeep: Upkeep | None = None
    warming: threading.Thread | None = None
    starting_model: Path | None = None
    model_loading: threading.Thread | None = None

    @property
    def model_error(self) -> str | None:
        """Why the start-up model did not load, if it did not."""
        return self.models.error

    def wait_for_model(self) -> None:
        """Wait until the start-up model is loaded (or failed: ``model_error`` says why)."""
        if self.model_loading is not None:
            self.model_loading.join()
            self.model_loading = None

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
        steps = [("the documents' index", self.documents.open), ("the embedding model", self.embedder.load)]
        if self.documents.ocr is not None:
            steps.append(("the OCR engine", self.documents.ocr.load))
        steps.append(("the vision projector", self.models.attach_projector))

        def run() -> None:
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

    def disk_warning(self) -> str | None:
        """A sentence when the data dir's disk is nearly full (below twice ``disk_reserve_mb`` free), else None."""
        return low_space_warning(self.settings.data_dir, int(self.settings.disk_reserve_mb * 2**20))

    def close(self) -> None:
        """Shut down cleanly: the clean-up stops, answers in flight finish (for up to ``shutdown_grace_s``, then
        they are stopped and saved as partial), the batch scheduler stops, the model is freed, and the embedded
        Redis saves and stops."""
        self.wait_for_model()
        if self.upkeep is not None:
            self.upkeep.close()
        self.chat.drain(self.settings.shutdown_grace_s)
        if self.chat.memory is not None:
            self.chat.memory.close()
        self.chat.scheduler.close()
        self.engine.unload()
        for remote in (self.chat.remote, self.chat.replicas.pool if self.chat.replicas else None):
            if remote is not None:
                remote.close()
        self.run_logs.close()
        try:
            self.redis_client.close()
        finally:
            if self.redis_server is not None:
                self.redis_server.stop()


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


def _upkeep_tasks(services: Services) -> list[tuple[str, object]]:
    """What the clean-up (``Upkeep``) runs: LanceDB's documents, chunks and memory tables compacted with their old
    versions deleted (once the index is open), and, for the embedded Redis only, its files rewritten (an external
    Redis's persistence is its operator's)."""
    def lancedb() -> str:
        if services.documents.open_seconds is None:
            return "index not opened"
        memory = services.chat.memory
        return services.store.purge() + (f"; {memory.purge()}" if memory is not None else "")

    tasks = [("lancedb", lancedb)]
    if services.redis_server is not None:
        tasks.append(("redis", lambda: rewrite_redis_files(services.redis_client)))
    return tasks


def _documents(settings: Settings, embedder: Embedder, engine: Engine, scheduler: Scheduler, drop_derived,
               reserve: int) -> DocumentService:
    """The documents' service: uploads under the data dir, LanceDB opened on first use, OCR when on, images
    described by the loaded vision model."""
    describing = Sampling(max_tokens=settings.describe_max_tokens, temperature=0.0, ignore_eos=settings.ignore_eos)
    return DocumentService(settings.path("uploads"), lambda: Store(settings.path("lancedb"), embedder.dim,
                                                                  embedder.name), embedder,
                           max_upload_bytes=settings.max_upload_bytes, chunk_tokens=settings.chunk_tokens,
                           overlap_tokens=settings.chunk_overlap_tokens, count_tokens=engine.count_tokens,
                           drop_derived=drop_derived, ocr=PageOcr() if settings.ocr else None,
                           disk_reserve_bytes=reserve, max_image_pixels=settings.max_image_pixels,
                           describe=lambda image: describe_image(engine, scheduler, image, describing),
                           extract_time_limit_s=settings.extract_time_limit_s)


def answering_calibration(settings: Settings, engine: Engine, remote: RemoteEngine | None) -> Calibration | None:
    """The verdict calibration of the model that answers: the loaded GGUF's (``models/calibrations`` first, then
    the shipped ones), or None for a remote server or a model without one."""
    if remote is not None or engine.model_path is None:
        return None
    return calibration_for(model_identity(engine.model_path), (settings.models_dir / "calibrations",))


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
        The services container. A model that fails to load leaves ``engine`` empty and the reason in
        ``model_error``; everything else still works.

    Raises:
        LayoutError: the data dir was written by a newer app (nothing in it is changed).
        RuntimeError: the embedded Redis did not start.
    """
    open_layout(settings.data_dir)  # migrate an older data dir forward, or refuse a newer one, before opening it
    client, server = connect(settings.redis_url, settings.path("redis"), settings.redis_appendfsync)
    embedder = embedder or Embedder(settings.embedding_model, settings.embed_batch_size, load_now=False)
    engine = Engine(Preflight(settings.path("preflight"), settings.preflight_timeout_s))
    reserve = int(settings.disk_reserve_mb * 2**20)
    kv_store = KVCacheStore(settings.path("kvcache"), int(settings.kv_disk_budget_mb * 2**20),
                            int(settings.kv_ram_budget_mb * 2**20), reserve)
    upkeep: list[Upkeep] = []  # made last; deletes before then (none) need no clean-up

    def poke() -> None:  # something was deleted: its bytes go at the next clean-up
        for u in upkeep:
            u.poke()

    sessions = SessionStore(client, settings.session_ttl_s, on_delete=poke)
    scheduler = Scheduler(engine, settings.prefill_chunk_tokens)

    def drop_derived(doc_id: str) -> None:  # a document's text changed or it was deleted: drop what came of it
        kv_store.delete_for_document(doc_id)
        grounder.drop(doc_id)
        poke()

    documents = _documents(settings, embedder, engine, scheduler, drop_derived, reserve)
    model = pick_model(settings.model_path, settings.models_dir, settings.hf_filename, best_bundled(settings.models_dir))
    remote, replicas = remote_parts(settings, engine, kv_store, model)
    grounder = Grounder(documents, calibration=lambda: answering_calibration(settings, engine, remote),
                        reader=None if remote or replicas else ReaderCheck(engine, scheduler),
                        ask_reader=settings.reader_check)
    snapshots, prefetcher = SessionSnapshots(kv_store.ram), Prefetcher(scheduler)
    chat = ChatService(settings, engine, kv_store, sessions, documents, snapshots, prefetcher, grounder, remote,
                       MemoryIndex(documents, embedder), replicas)
    primer = Primer(settings, engine, kv_store, sessions, documents, snapshots, prefetcher, chat.planner, remote,
                    replicas)

    def reset_caches(path: Path) -> int:
        snapshots.clear()
        return kv_store.delete_for_model(model_identity(path))

    run_logs = RunLogs(settings.path("logs") / "runs", int(settings.log_cap_mb * 2**20))
    services = Services(
        settings, engine, ModelManager(settings, engine, run_logs, reset_caches), kv_store,
        CacheCatalog(kv_store, engine, documents, replicas.slots if replicas else kv_store.slots), sessions, chat,
        primer, documents, grounder, SourceViewer(documents, documents.ocr), embedder, client, server, run_logs,
        Users(settings.users_path), Quotas(server.url if server else settings.redis_url, client, QuotaSettings(
            settings.questions_per_minute, settings.uploads_per_day, int(settings.quota_stored_mb * 2**20),
            settings.quota_documents, settings.max_concurrent_turns)))
    services.upkeep = Upkeep(_upkeep_tasks(services), settings.purge_delay_s, settings.upkeep_interval_s)
    upkeep.append(services.upkeep)
    threading.Thread(target=_sweep_images, args=(settings, sessions, time.time()), name="sweep-images",
                     daemon=True).start()
    if model is not None and remote is None and replicas is None:  # remote servers compute, not this process
        services.starting_model = model
        if serve_first:  # llama.cpp maps the file (the GIL released) while the caller builds the UI
            services.model_loading = threading.Thread(target=services.models.load_at_start, args=(model, False),
                                                      name="load-model", daemon=True)
            services.model_loading.start()
        else:
            services.models.load_at_start(model, True)
    return services
