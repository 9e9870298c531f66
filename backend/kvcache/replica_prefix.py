"""Getting a prefix onto a llama-server replica, and answering there: the replica is picked by the prefix
(``ReplicaPool.ranked``), a slot that already holds it is reused, else the prefix's KV state is restored from the
shared slot directory (saved there by any replica, or exported from the app's own cache of an in-process run),
else the replica computes it and saves it for every replica after it. The same tiers as the in-process engine
(``prefix.restore_prefix``), across machines.

A model with sliding-window or hybrid (recurrent) attention gets no reuse from a restored slot in llama.cpp
(ggml-org/llama.cpp #25913, #28194), so for those no slot file is written or read: each replica's own prompt
cache (the slot's tokens, ``cache_prompt``) is all the reuse they get (``slot_files_unsupported``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from backend.inference import Replica, ReplicaError, ReplicaPool, Sampling, StreamStats
from backend.kvcache.fingerprint import portable, tokens_sha256
from backend.kvcache.slots import SlotFiles, slot_name
from backend.kvcache.store import KVCacheStore

log = logging.getLogger(__name__)

# Architectures whose memory is not (only) a plain KV cache: recurrent or hybrid layers (llama.cpp's
# llm_arch_is_recurrent / llm_arch_is_hybrid), whose restored slots llama-server cannot reuse (#28194).
HYBRID_ARCHITECTURES = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "jamba", "falcon-h1",
                                  "granitehybrid", "lfm2", "nemotron_h", "plamo2", "qwen3next"})


def slot_files_unsupported(metadata: dict) -> str:
    """Why slot files cannot carry this model's prefixes between replicas ("" when they can): sliding-window
    attention (``<arch>.attention.sliding_window`` in its GGUF) or a hybrid/recurrent architecture."""
    arch = str(metadata.get("general.architecture", ""))
    if arch in HYBRID_ARCHITECTURES:
        return (f"{arch} is a hybrid/recurrent architecture: llama-server reuses nothing of a restored slot for it "
                "(llama.cpp #28194), so each replica keeps its prompts in RAM only")
    if f"{arch}.attention.sliding_window" in metadata:
        return ("it uses sliding-window attention: llama-server reuses nothing of a restored slot for it (llama.cpp "
                "#25913), so each replica keeps its prompts in RAM only")
    return ""


@dataclass(frozen=True)
class ReplicaPrefix:
    """How a prefix got onto a replica's slot.

    Attributes:
        tier: ``slot`` (the slot held it), ``restored`` (from the shared slot directory), ``exported`` (from the
            app's own cache, written there first), ``miss`` (computed on the replica, then saved for the others).
        replica: the replica's URL.
        slot: the slot id.
        n_tokens: prefix tokens.
        restore_s: seconds getting a saved state into the slot (restore, export included).
        prefill_s: seconds computing it (``miss``).
        state_bytes: the slot file's size (0 when none).
    """

    tier: str
    replica: str
    slot: int
    n_tokens: int
    restore_s: float = 0.0
    prefill_s: float = 0.0
    state_bytes: int = 0


def route_key(tokens: list[int], owner: str) -> str:
    """What a prefix is routed by: its tokens and owner (every app process picks the same replica for it)."""
    return hashlib.sha256((tokens_sha256(tokens) + owner).encode()).hexdigest()


class ReplicaCaches:
    """Prefixes and answers on the replicas (see the module docstring).

    Args:
        pool: the replicas.
        slots: the shared slot directory, or None (then each replica's prompt cache is all the reuse).
        kv_store: the app's own cache, whose entries of the same portable fingerprint are exported to ``slots``.
        model_sha256: the identity of the model file the app tokenizes with; a replica serving another file
            gets no questions (its token ids would mean other words).
        unsupported: why slot files cannot be used for this model ("" when they can).
    """

    def __init__(self, pool: ReplicaPool, slots: SlotFiles | None, kv_store: KVCacheStore, model_sha256: str,
                 unsupported: str = ""):
        self.pool, self.slots, self.kv_store = pool, slots, kv_store
        self.model_sha256, self.unsupported = model_sha256, unsupported

    def usable(self, replica: Replica) -> bool:
        """The replica serves the app's model file (its ``kvc-model`` tag)."""
        return replica.fingerprint.get("model_sha256") == self.model_sha256

    def candidates(self, tokens: list[int], owner: str, recheck: bool = False) -> list[Replica]:
        """The usable replicas that are up, in the order this prefix tries them (``recheck``: every replica that is
        down probed first).

        Raises:
            ReplicaError: none is up, or none serves the app's model.
        """
        ranked = self.pool.ranked(route_key(tokens, owner), recheck)
        usable = [r for r in ranked if self.usable(r)]
        if not usable:
            if ranked:
                raise ReplicaError("No replica serves the app's model file with the flags its caches need; start "
                                   "them with `python -m backend.inference.llama_server` on the same GGUF.")
            raise ReplicaError("Every inference replica is down; check that they run (the Model panel lists them), "
                               "then send the question again.")
        return usable

    def tries(self, tokens: list[int], owner: str) -> Iterator[Replica]:
        """The replicas to try for this prefix, in order: those up; when every one has failed (or none was up),
        each replica is probed once more at once and those that came back are tried too, rather than answering
        with an error while a replica that was restarted a moment ago is up (it would otherwise be probed again only
        after ``DOWN_RETRY_S``).

        Raises:
            ReplicaError: none is up, even after the second probe, or none serves the app's model.
        """
        tried: set[str] = set()
        try:
            first = self.candidates(tokens, owner)
        except ReplicaError:
            first = []
        for replica in first:
            tried.add(replica.url)
            yield replica
        for replica in self.candidates(tokens, owner, recheck=True):
            if replica.url not in tried:
                tried.add(replica.url)
                yield replica

    def _files(self, replica: Replica) -> SlotFiles | None:
        """The slot directory, when this replica and this model can use it."""
        return None if self.unsupported or not replica.fingerprint else self.slots

    def place(self, replica: Replica, slot: int, holds: bool, tokens: list[int], doc_ids, owner: str,
              chunks=()) -> ReplicaPrefix:
        """Get the prefix ``tokens`` into ``slot`` of ``replica`` (``holds``: the slot map says it has it).

        Raises:
            ReplicaError: the replica failed (it is marked down when it stopped answering).
        """
        files, fp = self._files(replica), replica.fingerprint
        name = slot_name(fp, tokens, owner) if fp else ""
        if holds and self.pool.slot_has_task(replica, slot):
            return ReplicaPrefix("slot", replica.url, slot, len(tokens))
        started = time.perf_counter()
        if files is not None:
            rec = files.get(name, fp, tokens)
            tier = "restored"
            if rec is None and self._export(files, name, fp, tokens, doc_ids, owner, chunks):
                rec, tier = files.get(name, fp, tokens), "exported"
            if rec is not None:
                try:
                    self.pool.restore(replica, slot, files.path(name).name)
                    files.touch(name)
                    return ReplicaPrefix(tier, replica.url, slot, len(tokens), time.perf_counter() - started,
                                         state_bytes=rec.size)
                except ReplicaError as exc:
                    if not replica.up:
                        raise
                    log.warning("slot file %s could not be restored on %s (%s); computing it again", name,
                                replica.url, exc)
                    files.delete(name)
        started = time.perf_counter()
        list(self.pool.complete(replica, slot, tokens, Sampling(max_tokens=1, temperature=0.0), StreamStats(),
                                n_predict=0))
        prefill_s = time.perf_counter() - started
        size = 0
        if files is not None:
            try:
                saved = self.pool.save(replica, slot, files.path(name).name)
                size = files.record(name, fp, tokens, doc_ids, owner, chunks).size if saved.get("n_saved") else 0
            except (ReplicaError, OSError) as exc:
                log.warning("the prefix computed on %s was not saved to the slot directory: %s", replica.url, exc)
        return ReplicaPrefix("miss", replica.url, slot, len(tokens), prefill_s=prefill_s, state_bytes=size)

    def _export(self, files: SlotFiles, name: str, fp: dict, tokens: list[int], doc_ids, owner: str, chunks) -> bool:
        """Write the app's own saved state of this prefix (same portable fingerprint) as slot file ``name``."""
        key = self.kv_store.find(portable(fp), tokens, owner)
        if key is None:
            return False
        state = self.kv_store.load(key, self.kv_store.entry(key).fingerprint, tokens)
        if state is None:
            return False
        try:
            files.export(name, fp, tokens, state, doc_ids, owner, chunks)
        except OSError as exc:
            log.warning("could not export KV cache %s to the slot directory: %s", key, exc)
            return False
        log.info("exported KV cache %s (%d tokens) to the slot directory for the replicas", key, len(tokens))
        return True

    def prime(self, tokens: list[int], doc_ids, owner: str, chunks=()) -> ReplicaPrefix:
        """Make sure this prefix's state is saved for the replicas (the **Cache** button): nothing to do when the
        slot directory has it, else it is exported from the app's cache or computed on the prefix's replica.

        Raises:
            ReplicaError: no replica could do it.
        """
        for replica in self.tries(tokens, owner):
            files, fp = self._files(replica), replica.fingerprint
            if files is not None:
                name = slot_name(fp, tokens, owner)
                rec = files.get(name, fp, tokens)
                if rec is not None or self._export(files, name, fp, tokens, doc_ids, owner, chunks):
                    rec = rec or files.get(name, fp, tokens)
                    return ReplicaPrefix("disk", replica.url, -1, len(tokens), state_bytes=rec.size if rec else 0)
            slot_map = self.pool.slot_map(replica)
            slot, holds = slot_map.acquire(slot_name(fp, tokens, owner) if fp else "")
            placed = None
            try:
                placed = self.place(replica, slot, holds, tokens, doc_ids, owner, chunks)
                return placed
            except ReplicaError:
                if replica.up:
                    raise
            finally:
                slot_map.release(slot, slot_name(fp, tokens, owner) if placed and fp else None)
        raise ReplicaError("Every inference replica failed while caching; check that they run, then cache again.")

    def answer(self, prefix: list[int], prompt: list[int], doc_ids, owner: str, chunks, sampling: Sampling,
               stats: StreamStats, placed: list[ReplicaPrefix]) -> Iterator[str]:
        """Stream the answer to ``prompt`` (which starts with ``prefix``) from the prefix's replica; a replica that
        fails before the first token is skipped for the next one. ``placed`` receives how the prefix got there.

        Yields:
            Text pieces.

        Raises:
            ReplicaError: every replica failed before answering ("one sentence"), or the answering one died
                mid-answer (what streamed is the caller's to keep).
        """
        for replica in self.tries(prefix, owner):
            fp = replica.fingerprint
            name = slot_name(fp, prefix, owner) if fp else ""
            slot_map = self.pool.slot_map(replica)
            slot, holds = slot_map.acquire(name)
            streamed, holding = False, None
            try:
                placed.append(self.place(replica, slot, holds, prefix, doc_ids, owner, chunks))
                holding = name
                for piece in self.pool.complete(replica, slot, prompt, sampling, stats):
                    streamed = True
                    yield piece
                return
            except ReplicaError:
                if streamed or replica.up:  # mid-answer, or a refusal: nothing another replica would do better
                    raise
                log.info("replica %s failed before answering; trying the next one", replica.url)
                placed.clear()
            finally:
                slot_map.release(slot, holding if replica.up else None)
        raise ReplicaError("Every inference replica failed; check that they run (the Model panel lists them), "
                           "then send the question again.")
