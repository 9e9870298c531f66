"""The long-lived objects of the app, built once at start and closed at shutdown."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import redis

from backend.cache_catalog import CacheCatalog
from backend.chat import ChatService
from backend.config import Settings
from backend.documents import DocumentService
from backend.embeddings import Embedder
from backend.engine import Engine, EngineError, LoadParams
from backend.kv_cache import KVCacheStore
from backend.model_registry import pick_model
from backend.redis_server import EmbeddedRedis
from backend.sessions import SessionStore
from backend.store import Store

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
        chat: chat turns and priming.
        caches: the user's view of the KV-cache entries (list, delete, which documents are cached).
        store / embedder: LanceDB and sentence-transformers.
        redis_server: the embedded server, or None with ``REDIS_URL``.
        model_error: why the start-up model did not load, if it didn't.
    """

    settings: Settings
    engine: Engine
    kv_store: KVCacheStore
    sessions: SessionStore
    documents: DocumentService
    chat: ChatService
    caches: CacheCatalog
    store: Store
    embedder: Embedder
    redis_client: redis.Redis
    redis_server: EmbeddedRedis | None
    model_error: str | None = None

    def load_params(self) -> LoadParams:
        """llama.cpp settings from the configuration."""
        s = self.settings
        return LoadParams(n_ctx=s.n_ctx, n_gpu_layers=s.n_gpu_layers, n_batch=s.n_batch, n_threads=s.n_threads,
                          flash_attn=s.flash_attn, type_k=s.type_k, type_v=s.type_v)

    def load_model(self, path: Path, **overrides) -> None:
        """Load a model with the configured settings.

        Args:
            path: the GGUF file.
            overrides: ``LoadParams`` fields to change for this load (e.g. ``type_k="q8_0"``).

        Raises:
            EngineError: see ``Engine.load``.
        """
        self.engine.load(Path(path), dataclasses.replace(self.load_params(), **overrides))
        self.model_error = None

    def close(self) -> None:
        """Free the model, close Redis connections and stop the embedded server."""
        self.engine.unload()
        try:
            self.redis_client.close()
        finally:
            if self.redis_server is not None:
                self.redis_server.stop()


def build_services(settings: Settings, embedder: Embedder | None = None) -> Services:
    """Create every long-lived object, start Redis when embedded, and load the model if one is found.

    Args:
        settings: the configuration.
        embedder: an already loaded embedding model to share (tests, several apps in one process).

    Returns:
        The services container. A model that fails to load leaves ``engine`` empty and the
        reason in ``model_error``; everything else still works.

    Raises:
        RuntimeError: the embedded Redis did not start.
    """
    server = None
    url = settings.redis_url
    if not url:
        server = EmbeddedRedis(settings.path("redis"))
        url = server.start()
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    embedder = embedder or Embedder(settings.embedding_model, settings.embed_batch_size)
    store = Store(settings.path("lancedb"), embedder.dim)
    engine = Engine()
    kv_store = KVCacheStore(settings.path("kvcache"), int(settings.kv_disk_budget_mb * 1024 * 1024),
                            int(settings.kv_ram_budget_mb * 1024 * 1024))
    sessions = SessionStore(client, settings.session_ttl_s)
    documents = DocumentService(settings.path("uploads"), store, embedder, engine, kv_store,
                                max_upload_bytes=settings.max_upload_bytes, chunk_tokens=settings.chunk_tokens,
                                overlap_tokens=settings.chunk_overlap_tokens)
    chat = ChatService(settings, engine, kv_store, sessions, documents)
    caches = CacheCatalog(kv_store, engine, store)
    services = Services(settings, engine, kv_store, sessions, documents, chat, caches, store, embedder, client, server)
    model = pick_model(settings.model_path, settings.models_dir, settings.hf_filename)
    if model is not None:
        try:
            services.load_model(model)
        except EngineError as exc:
            services.model_error = str(exc)
            log.warning("start-up model not loaded: %s", exc)
    return services
