"""Getting document prefixes into the model ahead of questions: priming on request (the Cache
button, prime on upload) and prefetch while the user types (see ``backend.kvcache.prefetch``).

Both build the same cached prefix a chat turn would (``prompts.frame`` over the documents'
text, or over one retrieved chunk for a document too long for ``n_ctx``), so a primed prefix is
exactly the one the next question restores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from backend.chat.planner import ChatError, Planner
from backend.chat.prompts import Frame, chunk_frame, frame, prefix_tokens
from backend.chat.sessions import SessionStore
from backend.config import Settings
from backend.documents import DocumentService
from backend.inference import Engine, Job, NoModelLoaded, RemoteEngine
from backend.kvcache import (
    KVCacheStore,
    Prefetcher,
    PrefetchJob,
    PrefixMiss,
    PrefixResult,
    ReplicaCaches,
    SessionSnapshots,
    fingerprint,
    restore_prefix,
    saved_prefix,
    to_prime,
)

log = logging.getLogger(__name__)


class Primer:
    """Primes and prefetches document prefixes.

    Args:
        settings: app settings (system prompt, ``max_tokens``).
        engine / kv_store / sessions / documents: the long-lived services.
        snapshots: session snapshots, preferred by a prefetch when they hold the prefix.
        prefetcher: runs one preemptible prefetch at a time.
        planner: the chat's planner, whose ``auto`` choice says what to cache (the documents whole, or
            their chunks).
        remote: an OpenAI-compatible server that answers instead of ``engine`` (None: local).
        replicas: llama-server replicas that compute and keep the prefixes (``engine`` holds the vocabulary only).
    """

    def __init__(self, settings: Settings, engine: Engine, kv_store: KVCacheStore, sessions: SessionStore,
                 documents: DocumentService, snapshots: SessionSnapshots, prefetcher: Prefetcher, planner: Planner,
                 remote: RemoteEngine | None = None, replicas: ReplicaCaches | None = None):
        self.replicas = replicas
        self.settings, self.engine, self.kv_store, self.sessions = settings, engine, kv_store, sessions
        self.planner = planner
        self.documents, self.snapshots, self.prefetcher, self.remote = documents, snapshots, prefetcher, remote
        self.scheduler = prefetcher.scheduler

    def cache_documents(self, owner: str, doc_ids: list[str],
                        progress: Callable[[int, int], None] | None = None) -> dict:
        """Prefill the instructions plus these documents and save the KV state. Documents that ``auto``
        answers by retrieval (too long for the context window, or for what the model reads well whole,
        ``Planner.auto_mode``) have each of their chunks cached instead (``cache_chunks``).

        Args:
            owner: the user.
            doc_ids: documents, in prefix order.
            progress: called with ``(chunks done, chunks)`` while chunks are cached.

        Returns:
            ``{"doc_id", "doc_ids", "tokens", "bytes", "seconds", "tier", "reason"}`` (tokens of the prefix,
            bytes of the saved state, seconds of wall time, auto's reason). With a remote server the prefix
            is sent with ``max_tokens=1`` so the server caches it (tier ``remote``, no bytes here). For
            chunks, tier ``chunks`` and ``cache_chunks``'s extra fields, summed over the documents.

        Raises:
            NoModelLoaded: no model.
            ChatError: the documents do not fit the context window and chunk caching is off
                (``rag_prefix_chunks=0``).
            DocumentError: unknown id.
        """
        if self.remote is not None:
            head = self._doc_frame(owner, doc_ids)[0]
            primed = self.remote.prime(head.system, head.opening)
            return {"doc_id": doc_ids[0] if len(doc_ids) == 1 else None, "doc_ids": list(doc_ids),
                    "tokens": primed["tokens"], "bytes": 0, "seconds": primed["seconds"], "tier": "remote",
                    "server_cached_tokens": primed["cached_tokens"]}
        self._require_model()
        tokens, docs = self._doc_prefix(owner, doc_ids)
        room = self._prefix_room()
        chosen, reason = self.planner.auto_mode(len(tokens) if len(tokens) <= room else None)
        if chosen == "rag" and self.settings.rag_prefix_chunks > 0:
            return self._cache_each(owner, doc_ids, reason, progress)
        if len(tokens) > room:
            names = ", ".join(d.name for d in docs)
            raise ChatError(f"'{names}' is {len(tokens)} tokens, more than the {room} that fit in the context "
                            f"window (n_ctx {self.engine.n_ctx}); questions about it will use retrieval instead.")
        start = time.perf_counter()
        result = self._prime(owner, tokens, list(doc_ids))
        return {"doc_id": doc_ids[0] if len(doc_ids) == 1 else None, "doc_ids": list(doc_ids),
                "tokens": len(tokens), "bytes": result.state_bytes,
                "seconds": round(time.perf_counter() - start, 4), "tier": result.tier, "reason": reason}

    def _cache_each(self, owner: str, doc_ids: list[str], reason: str,
                    progress: Callable[[int, int], None] | None) -> dict:
        """``cache_chunks`` for each document, with the results summed (``chunks`` and ``computed`` too)."""
        total: dict = {"doc_id": doc_ids[0] if len(doc_ids) == 1 else None, "doc_ids": list(doc_ids),
                       "tier": "chunks", "reason": reason}
        for doc_id in doc_ids:
            done = self.cache_chunks(owner, doc_id, progress)
            for key in ("tokens", "bytes", "seconds", "chunks", "computed"):
                total[key] = round(total.get(key, 0) + done[key], 4)
        return total

    def cache_chunks(self, owner: str, doc_id: str, progress: Callable[[int, int], None] | None = None) -> dict:
        """Save the KV state of each chunk's RAG prefix (the instructions and that chunk, as a RAG
        turn lays it out with ``rag_prefix_chunks=1``), so questions about a long document restore
        their chunk instead of prefilling it (TurboRAG's offline chunk KV, Lu et al. 2024, with each
        chunk kept whole with its own instructions instead of re-positioned). Each chunk is a job of
        the batch scheduler, so answers keep streaming meanwhile.

        Args:
            owner: the user.
            doc_id: the document.
            progress: called with ``(chunks done, chunks)`` after each chunk.

        Returns:
            ``{"doc_id", "doc_ids", "tokens", "bytes", "seconds", "tier": "chunks", "chunks",
            "computed"}``: prefix tokens and state bytes summed over the chunks, and how many of
            them had to be computed (the others were already saved).

        Raises:
            NoModelLoaded: no model.
            DocumentError: unknown id.
        """
        self._require_model()
        hits = self.documents.chunks(owner, doc_id)
        start, tokens, size, computed = time.perf_counter(), 0, 0, 0
        for i, hit in enumerate(hits):
            prefix = prefix_tokens(self.engine, chunk_frame(self.settings.system_prompt, [hit]))
            result = self._prime(owner, prefix, [doc_id], [hit.idx])
            tokens, size, computed = tokens + len(prefix), size + result.state_bytes, computed + (result.tier == "miss")
            if progress:
                progress(i + 1, len(hits))
        return {"doc_id": doc_id, "doc_ids": [doc_id], "tokens": tokens, "bytes": size,
                "seconds": round(time.perf_counter() - start, 4), "tier": "chunks", "chunks": len(hits),
                "computed": computed}

    def _require_model(self) -> None:
        """Raise ``NoModelLoaded`` unless prefixes can be primed: a loaded model, or with replicas its vocabulary."""
        if not (self.engine.can_tokenize if self.replicas is not None else self.engine.loaded):
            raise NoModelLoaded()

    def _prime(self, owner: str, tokens: list[int], doc_ids: list[str], chunks: list[int] | tuple[int, ...] = ()):
        """Save this prefix's state unless a file has it already: a scheduler job that takes a
        sequence like a turn, evaluates what the sequence lacks beside the answers being written,
        and saves. ``chunks`` as for ``restore_prefix``. With replicas, the prefix's replica does it and the state
        goes to the shared slot directory (``ReplicaCaches.prime``).

        Returns:
            The ``PrefixResult``: ``disk`` when a file existed, else ``miss`` (with replicas, also ``exported``:
            written from the app's own cache).

        Raises:
            EngineError: llama.cpp failed, or the model changed meanwhile; ``CacheWriteError`` (one of
                them) when the disk is too full to keep the cache; ``ReplicaError`` when no replica could.
        """
        if self.replicas is not None:
            got = self.replicas.prime(tokens, doc_ids, owner, chunks)
            return PrefixResult(got.tier, got.n_tokens, got.restore_s, got.prefill_s, got.state_bytes)
        engine = self.engine
        with engine.lock:
            existing = saved_prefix(engine, self.kv_store, tokens, owner)
        if existing is not None:
            return existing
        found: list[PrefixMiss] = []

        def prepare(seq: int) -> dict:
            found.append(to_prime(engine, self.kv_store, tokens, doc_ids, owner, chunks, seq))
            return found[0].milestones(required=True)  # caching is the point: a full disk says so

        for _ in self.scheduler.submit(Job(owner, tokens, None, prepare)).stream():
            pass
        return found[0].result

    def cache_if_possible(self, owner: str, doc_id: str,
                          progress: Callable[[int, int], None] | None = None) -> dict | None:
        """Prime one document right after its upload ("prime on upload"), when that can work;
        ``progress`` as for ``cache_documents``.

        Returns:
            ``cache_documents``'s result, or None when no model is loaded or the document does
            not fit the context window and its chunks are not cached either (``rag_prefix_chunks=0``).

        Raises:
            DocumentError: unknown id.
        """
        if not self.engine.loaded and self.remote is None and self.replicas is None:
            return None
        try:
            return self.cache_documents(owner, [doc_id], progress)
        except ChatError as exc:
            log.info("not priming %s on upload: %s", doc_id, exc)
            return None

    def _doc_frame(self, owner: str, doc_ids: list[str], instructions: str = "") -> tuple[Frame, list]:
        """The frame for these documents (instructions, default: the configured ones; the documents
        opening the first user message), and the documents' texts."""
        docs = [self.documents.text(owner, d) for d in doc_ids]
        return frame(instructions or self.settings.system_prompt, docs), docs

    def _doc_prefix(self, owner: str, doc_ids: list[str], instructions: str = "") -> tuple[list[int], list]:
        """The cached-prefix token ids for these documents, and their texts."""
        head, docs = self._doc_frame(owner, doc_ids, instructions)
        return prefix_tokens(self.engine, head), docs

    def _prefix_room(self) -> int:
        """Most tokens a document prefix may take: ``n_ctx`` less the answer and a question's room."""
        return self.engine.n_ctx - self.settings.max_tokens - 64

    def prefetch(self, owner: str, session_id: str | None, doc_ids: list[str],
                 mode: str = "auto") -> PrefetchJob | None:
        """Start getting this session's context ready while the user types (see ``backend.kvcache.prefetch``).

        The target is the session's snapshot when it starts with the selected documents' prefix,
        else that prefix (restored from RAM or disk, or prefilled and saved, preemptibly). In
        ``rag`` mode, when the documents do not fit, or when ``auto`` would retrieve, the prefix is
        the instructions alone.

        Args:
            owner: the user.
            session_id: the session the question will come from (None: a new chat).
            doc_ids: selected documents, in order.
            mode: the chat mode (``MODES``).

        Returns:
            The running job, or None when no model is loaded or a remote server answers (it
            keeps its own prefix cache).

        Raises:
            DocumentError: an unknown document id.
            SessionNotFound / SessionError: bad session id or Redis unreachable.
        """
        if not self.engine.loaded or self.remote is not None or self.replicas is not None:
            return None
        ids = list(doc_ids) if mode != "rag" else []
        instructions = self.sessions.get(owner, session_id).system_prompt if session_id else ""
        tokens, _ = self._doc_prefix(owner, ids, instructions)
        fits = len(tokens) <= self._prefix_room()
        if ids and (not fits or (mode == "auto" and self.planner.auto_mode(len(tokens))[0] == "rag")):
            ids = []
            tokens, _ = self._doc_prefix(owner, ids, instructions)
        snap = self.snapshots.get(owner, session_id, fingerprint(self.engine)) if session_id else None

        target = list(snap.splice.tokens) if snap and snap.splice.tokens[: len(tokens)] == tuple(tokens) else tokens

        def restore(seq: int):
            got = snap and self.snapshots.restore(self.engine, snap, tokens, target, seq)
            return got or restore_prefix(self.engine, self.kv_store, tokens, ids, owner, seq=seq)

        return self.prefetcher.start(session_id or "", owner, target, restore)
