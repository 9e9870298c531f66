"""Where answers are computed when ``remote_base_url`` is set, built for the composition root: llama-server
replicas whose saved prefixes are the app's slot files, or one OpenAI-compatible server."""

from __future__ import annotations

import logging
from pathlib import Path

from backend.config import Settings
from backend.inference import Engine, EngineError, RemoteEngine, ReplicaPool, model_identity
from backend.kvcache.replica_prefix import ReplicaCaches, slot_files_unsupported
from backend.kvcache.slots import SlotFiles
from backend.kvcache.store import KVCacheStore

log = logging.getLogger(__name__)


def remote_parts(settings: Settings, engine: Engine, kv_store: KVCacheStore,
                 model: Path | None) -> tuple[RemoteEngine | None, ReplicaCaches | None]:
    """llama-server replicas when the model file they serve is here too (its vocabulary is loaded,
    ``Engine.load_vocab``: prompts go as token ids, prefixes to slot files in ``remote_slot_dir``), else one
    OpenAI-compatible server (chat messages; its own prefix cache). Without ``remote_base_url``, the replicas'
    slot directory (when set) becomes the in-process store's tier below disk.

    Args:
        settings: the configuration.
        engine: the app's engine (it loads the model's vocabulary for replicas).
        kv_store: the app's KV-cache files.
        model: the model file found here, or None.

    Returns:
        ``(remote, replicas)``: at most one of them set; both None for the in-process engine.
    """
    if not settings.remote_base_url:
        if settings.remote_slot_dir:  # replicas' saved prefixes, restored in-process
            kv_store.slots = SlotFiles(settings.remote_slot_dir, int(settings.remote_slot_budget_mb * 2**20),
                                       kv_store.pins.holds)
        return None, None
    def plain() -> RemoteEngine:
        return RemoteEngine(settings.replica_urls[0], settings.remote_api_key, settings.remote_model,
                            settings.remote_n_ctx)

    if model is None:
        return plain(), None
    try:
        engine.load_vocab(model, settings.n_ctx)
    except EngineError as exc:
        log.warning("%s Answering through %s as a plain OpenAI-compatible server.", exc, settings.replica_urls[0])
        return plain(), None
    unsupported = slot_files_unsupported(engine.metadata)
    if unsupported:
        log.warning("no slot files for %s: %s", model.name, unsupported)
    slots = (SlotFiles(settings.remote_slot_dir, int(settings.remote_slot_budget_mb * 2**20), kv_store.pins.holds)
             if settings.remote_slot_dir and not unsupported else None)
    pool = ReplicaPool(settings.replica_urls, settings.remote_api_key)
    log.info("answers come from %d llama-server replicas (%s); slot files %s", len(pool.replicas),
             ", ".join(r.url for r in pool.replicas), settings.remote_slot_dir if slots else "off")
    return None, ReplicaCaches(pool, slots, kv_store, model_identity(model), unsupported)
