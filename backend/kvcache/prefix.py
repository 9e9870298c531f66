"""Getting a prefix into the context: reuse it live, restore it from the RAM or disk tier,
chain from a shorter document set's prefix, or prefill it and save it.

Every function here works on one llama.cpp sequence (``seq``) and expects the caller to hold
``engine.lock``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.inference import Engine, common_prefix_len
from backend.kvcache.fingerprint import entry_key, fingerprint
from backend.kvcache.slots import slot_name
from backend.kvcache.store import CacheWriteError, KVCacheStore, prefix_parts

log = logging.getLogger(__name__)

# Tokens a preemptible prefill evaluates between checks: about 1 s of prefill for a 0.6B model
# on two CPU cores (benchmarks/ttft.py), small enough that a preempting question waits little.
PREEMPTIBLE_CHUNK_TOKENS = 128


@dataclass(frozen=True)
class PrefixResult:
    """How ``ensure_prefix`` got the prefix into the context.

    Attributes:
        tier: ``live`` (already in the context), ``ram`` (restored from the RAM tier), ``disk``
            (read, verified and restored from a file), ``slot`` (from a llama-server replica's slot file in the
            shared slot directory), ``miss`` (prefilled, then saved), or ``remote`` (a remote server answered;
            its own prefix cache applies); with replicas, ``ReplicaPrefix``'s tiers.
        n_tokens: prefix length, tokens.
        restore_s: seconds spent getting a saved state into the context (0 unless ``ram``/``disk``).
        prefill_s: seconds spent evaluating prefix tokens (0 unless ``miss``).
        state_bytes: size of the saved state, bytes (0 for ``live``).
        chained_tokens: on a ``miss``, tokens taken from the cached prefix of a shorter document
            set that this one starts with (prefix chaining), so only the rest was prefilled.
        snapshot_tokens: tokens restored from the session's own snapshot (prefix plus history;
            ``backend.kvcache.snapshots``), 0 otherwise.
        prefilled_tokens: prefix tokens evaluated this time (on a ``miss``; not reused).
    """

    tier: str
    n_tokens: int
    restore_s: float = 0.0
    prefill_s: float = 0.0
    state_bytes: int = 0
    chained_tokens: int = 0
    snapshot_tokens: int = 0
    prefilled_tokens: int = 0


class PrefixMiss:
    """A prefix no tier had: the sequence holds ``held`` of its tokens (maybe chained from a shorter
    set), the rest must be evaluated, then ``save`` stores the state (the chat turn's batch does the
    evaluating, as a ``SeqRun`` milestone at ``len(tokens)``; ``ensure_prefix`` does it at once).

    Attributes:
        tokens: the prefix, token ids.
        held: tokens of it the sequence already holds.
        chained_tokens / restore_s: as in ``PrefixResult`` (a shorter set's prefix restored first).
        result: the ``PrefixResult`` once saved (None before).
    """

    def __init__(self, engine: Engine, store: KVCacheStore, key: str, fp: dict, tokens: list[int], doc_ids: list[str],
                 owner: str, chunks: list[int] | tuple[int, ...], seq: int, chained_tokens: int, restore_s: float):
        self.engine, self.store, self.key, self.fp, self.seq = engine, store, key, fp, seq
        self.tokens, self.doc_ids, self.owner, self.chunks = tokens, doc_ids, owner, chunks
        self.chained_tokens, self.restore_s = chained_tokens, restore_s
        self.held = common_prefix_len(engine.context_tokens(seq), tokens)
        self.started = time.perf_counter()
        self.result: PrefixResult | None = None

    def milestones(self, required: bool = False) -> dict:
        """``SeqRun`` milestones that save this prefix once the sequence holds it (saved at once
        when it already does); ``required`` as for ``save``. Caller holds ``engine.lock``."""
        if self.held >= len(self.tokens):
            self.save(required)
            return {}
        return {len(self.tokens): lambda: self.save(required)}

    def save(self, required: bool = True) -> PrefixResult:
        """Store the sequence's state, which now holds exactly ``tokens`` (caller holds ``engine.lock``).

        Args:
            required: raise when the disk is too full to keep it (priming); False keeps the state in
                the RAM tier only and goes on (a chat turn answers whether or not its prefix is saved).

        Returns:
            The ``miss`` result: prefill seconds since this miss was found, tokens evaluated.

        Raises:
            CacheWriteError: ``required`` and the disk is too full (``KVCacheStore.save``).
        """
        prefill_s = time.perf_counter() - self.started
        state = self.engine.get_state(self.seq)
        try:
            self.store.save(self.key, self.fp, self.tokens, state, self.doc_ids, self.owner, self.chunks)
        except CacheWriteError as exc:
            if required:
                raise
            log.warning("prefix kept in RAM only: %s", exc)
            self.store.ram.put(self.key, state)
        self.result = PrefixResult("miss", len(self.tokens), restore_s=self.restore_s, prefill_s=prefill_s,
                                   state_bytes=len(state), chained_tokens=self.chained_tokens,
                                   prefilled_tokens=len(self.tokens) - self.held)
        return self.result


def prime(engine: Engine, store: KVCacheStore, tokens: list[int], doc_ids: list[str], owner: str,
          chunks: list[int] | tuple[int, ...] = (), seq: int = 0) -> PrefixResult:
    """Make sure a saved state for this prefix exists on disk (the **Cache** button, or a RAG
    chunk's prefix computed ahead of its first question), prefilling it in sequence ``seq`` at once
    (the app's Primer runs ``to_prime`` through the batch scheduler instead).

    Caller must hold ``engine.lock``. ``chunks``: as for ``ensure_prefix``.

    Returns:
        tier ``disk`` when a file already existed (nothing computed), else ``miss``.
    """
    existing = saved_prefix(engine, store, tokens, owner)
    if existing is not None:
        return existing
    engine.claim(seq, owner)
    miss = to_prime(engine, store, tokens, doc_ids, owner, chunks, seq)
    engine.prefill(tokens, seq=seq)
    return miss.save()


def to_prime(engine: Engine, store: KVCacheStore, tokens: list[int], doc_ids: list[str], owner: str,
             chunks: list[int] | tuple[int, ...] = (), seq: int = 0) -> PrefixMiss:
    """The work of priming this prefix in sequence ``seq`` (claimed): the sequence is cut back to
    the part of the prefix it holds (it may hold more, e.g. a chat's history after the prefix, which
    must not be saved with it); then evaluate what it lacks and save (``PrefixMiss.milestones``).
    Caller holds ``engine.lock``."""
    engine.truncate(seq, common_prefix_len(engine.context_tokens(seq), tokens))
    fp = fingerprint(engine)
    return PrefixMiss(engine, store, entry_key(fp, tokens, owner), fp, tokens, doc_ids, owner, chunks, seq, 0, 0.0)


def saved_prefix(engine: Engine, store: KVCacheStore, tokens: list[int], owner: str) -> PrefixResult | None:
    """The ``disk`` result when a saved state for this prefix exists under the current fingerprint,
    else None (nothing is read or loaded)."""
    fp = fingerprint(engine)
    existing = store.entry(entry_key(fp, tokens, owner))
    if existing is not None and existing.fingerprint == fp:
        return PrefixResult("disk", len(tokens), state_bytes=existing.state_bytes)
    return None


def restore_prefix(engine: Engine, store: KVCacheStore, tokens: list[int], doc_ids: list[str], owner: str,
                   chunks: list[int] | tuple[int, ...] = (), seq: int = 0) -> PrefixResult | PrefixMiss:
    """Make sequence ``seq`` start with ``tokens`` if any tier has them: keep them live, or restore
    them from RAM or disk; else restore the longest cached shorter set (prefix chaining) and
    report what is left to prefill.

    Caller must hold ``engine.lock`` and have claimed the sequence (``Engine.claim``).

    Args:
        engine: the loaded engine.
        store: the cache store (RAM and disk tiers).
        tokens: prefix token ids (system instructions plus documents).
        doc_ids: the documents in the prefix, recorded in the sidecar.
        owner: recorded in the sidecar.
        chunks: for a RAG turn's prefix of retrieved chunks, each ``doc_ids`` entry's chunk
            index (recorded in the sidecar); empty for whole documents.
        seq: the sequence.

    Returns:
        A ``PrefixResult`` (tier ``live``, ``ram`` or ``disk``) when the sequence now starts with
        ``tokens``, else a ``PrefixMiss`` to evaluate and save.
    """
    if engine.context_tokens(seq)[: len(tokens)] == tokens:
        return PrefixResult("live", len(tokens))
    fp = fingerprint(engine)
    key = entry_key(fp, tokens, owner)
    start = time.perf_counter()
    tier, state_bytes = _restore(engine, store, key, fp, tokens, seq)
    if not tier and store.slots is not None:
        tier, state_bytes = _import_slot(engine, store, key, fp, tokens, doc_ids, owner, chunks, seq)
    if tier:
        return PrefixResult(tier, len(tokens), restore_s=time.perf_counter() - start, state_bytes=state_bytes)
    chained = _restore_shorter_set(engine, store, fp, tokens, doc_ids, owner, chunks, seq)
    return PrefixMiss(engine, store, key, fp, tokens, doc_ids, owner, chunks, seq, chained,
                      time.perf_counter() - start if chained else 0.0)


def ensure_prefix(engine: Engine, store: KVCacheStore, tokens: list[int], doc_ids: list[str], owner: str,
                  should_stop: Callable[[], bool] | None = None,
                  chunks: list[int] | tuple[int, ...] = (), seq: int = 0) -> PrefixResult:
    """Make sequence ``seq`` start with ``tokens``: reuse it, restore it, or prefill and save it,
    all at once (``restore_prefix``, then the prefill).

    Caller must hold ``engine.lock``.

    Args:
        engine / store / tokens / doc_ids / owner / chunks / seq: as for ``restore_prefix``.
        should_stop: makes a prefill preemptible (checked every ``PREEMPTIBLE_CHUNK_TOKENS``).

    Returns:
        Which tier served it and what it cost.

    Raises:
        Interrupted: ``should_stop`` stopped the prefill; the sequence holds part of the prefix.
    """
    engine.claim(seq, owner)
    got = restore_prefix(engine, store, tokens, doc_ids, owner, chunks, seq)
    if isinstance(got, PrefixResult):
        return got
    engine.prefill(tokens, should_stop, PREEMPTIBLE_CHUNK_TOKENS if should_stop else None, seq)
    return got.save()


def _restore(engine: Engine, store: KVCacheStore, key: str, fp: dict, tokens: list[int],
             seq: int) -> tuple[str, int]:
    """Load entry ``key`` (holding ``tokens``) into sequence ``seq`` from RAM or disk.

    Returns:
        ``(tier, state_bytes)``: tier ``ram`` or ``disk``, or ``("", 0)`` when the entry is
        missing, invalid or rejected (then deleted).
    """
    state, tier = store.fetch(key, fp, tokens)
    if state is None:
        return "", 0
    try:
        engine.set_state(state, tokens, seq)
    except RuntimeError as exc:  # a state llama.cpp rejects is as bad as a failed checksum
        log.warning("KV cache %s unusable (%s); recomputing", key, exc)
        store.delete(key)
        return "", 0
    return tier, len(state)


def _import_slot(engine: Engine, store: KVCacheStore, key: str, fp: dict, tokens: list[int], doc_ids: list[str],
                 owner: str, chunks, seq: int) -> tuple[str, int]:
    """Restore the prefix from a llama-server replica's slot file of the same portable fingerprint
    (``store.slots``, the shared slot directory), and keep it as the app's own entry from then on.

    Returns:
        ``("slot", state_bytes)``, or ``("", 0)`` when no usable slot file holds it.
    """
    state = store.slots.load(slot_name(fp, tokens, owner), fp, tokens)
    if state is None:
        return "", 0
    try:
        engine.set_state(state, tokens, seq)
    except RuntimeError as exc:
        log.warning("slot file for %s unusable in-process (%s); recomputing", key, exc)
        return "", 0
    try:
        store.save(key, fp, tokens, state, doc_ids, owner, chunks)
    except CacheWriteError as exc:
        log.warning("slot file restored but not kept as a cache entry: %s", exc)
    log.info("restored %d tokens from a replica's slot file", len(tokens))
    return "slot", len(state)


def _restore_shorter_set(engine: Engine, store: KVCacheStore, fp: dict, tokens: list[int], doc_ids: list[str],
                         owner: str, chunks: list[int] | tuple[int, ...], seq: int) -> int:
    """Prefix chaining: restore the cached prefix of the longest document (or chunk) set that
    ``doc_ids`` (with ``chunks``) starts with (e.g. ``[A]`` for ``[A, B]``), when it shares more
    tokens with ``tokens`` than the context already does.

    Returns:
        How many of ``tokens`` the context now holds from that entry (0 when none was used).
    """
    if len(doc_ids) < 2:  # a single document has no shorter set to start from
        return 0
    have = common_prefix_len(engine.context_tokens(seq), tokens)
    parts = prefix_parts(doc_ids, chunks)
    best = None
    for e in store.entries():
        n = len(e.doc_ids)
        if (e.fingerprint == fp and e.owner == owner and 0 < n < len(doc_ids) and e.parts == parts[:n]
                and (best is None or n > len(best.doc_ids))):
            best = e
    if best is None:
        return 0
    shorter = store.tokens(best.key)
    if not shorter or common_prefix_len(shorter, tokens) <= have:
        return 0
    if not _restore(engine, store, best.key, fp, shorter, seq)[0]:
        return 0
    return common_prefix_len(shorter, tokens)
