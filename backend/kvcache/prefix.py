"""Getting a prefix into the context: reuse it live, restore it from the RAM or disk tier,
chain from a shorter document set's prefix, or prefill it and save it.

Every function here expects the caller to hold ``engine.lock``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.inference import Engine, common_prefix_len
from backend.kvcache.fingerprint import entry_key, fingerprint
from backend.kvcache.store import KVCacheStore, prefix_parts

log = logging.getLogger(__name__)

# Tokens a preemptible prefill evaluates between checks: about 1 s of prefill for a 0.6B model
# on two CPU cores (benchmarks/ttft.py), small enough that a preempting question waits little.
PREEMPTIBLE_CHUNK_TOKENS = 128


@dataclass(frozen=True)
class PrefixResult:
    """How ``ensure_prefix`` got the prefix into the context.

    Attributes:
        tier: ``live`` (already in the context), ``ram`` (restored from the RAM tier), ``disk``
            (read, verified and restored from a file), ``miss`` (prefilled, then saved), or
            ``remote`` (a remote server answered; its own prefix cache applies).
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


def _prefill_and_save(engine: Engine, store: KVCacheStore, key: str, fp: dict, tokens: list[int],
                      doc_ids: list[str], owner: str, should_stop: Callable[[], bool] | None = None,
                      chunks: list[int] | tuple[int, ...] = ()) -> PrefixResult:
    """Evaluate the prefix (keeping any matching part already in the context) and save its state.

    Raises:
        Interrupted: ``should_stop`` stopped the prefill (nothing is saved).
    """
    start = time.perf_counter()
    evaluated = engine.prefill(tokens, should_stop, PREEMPTIBLE_CHUNK_TOKENS if should_stop else None)
    prefill_s = time.perf_counter() - start
    state = engine.get_state()
    store.save(key, fp, tokens, state, doc_ids, owner, chunks)
    return PrefixResult("miss", len(tokens), prefill_s=prefill_s, state_bytes=len(state), prefilled_tokens=evaluated)


def claim_context(engine: Engine, owner: str) -> None:
    """Start from an empty context when it holds another user's tokens, so no user's turn reuses (or can time)
    KV entries another user put there. Caller must hold ``engine.lock``.

    Args:
        engine: the loaded engine.
        owner: the user about to use the context.
    """
    if engine.context_owner not in (None, owner):
        engine.clear_context()
    engine.context_owner = owner


def prime(engine: Engine, store: KVCacheStore, tokens: list[int], doc_ids: list[str], owner: str,
          chunks: list[int] | tuple[int, ...] = ()) -> PrefixResult:
    """Make sure a saved state for this prefix exists on disk (the **Cache** button, or a RAG
    chunk's prefix computed ahead of its first question).

    Caller must hold ``engine.lock``. ``chunks``: as for ``ensure_prefix``.

    Returns:
        tier ``disk`` when a file already existed (nothing computed), else ``miss``.
    """
    claim_context(engine, owner)
    fp = fingerprint(engine)
    key = entry_key(fp, tokens, owner)
    existing = store.entry(key)
    if existing is not None and existing.fingerprint == fp:
        return PrefixResult("disk", len(tokens), state_bytes=existing.state_bytes)
    return _prefill_and_save(engine, store, key, fp, tokens, doc_ids, owner, chunks=chunks)


def ensure_prefix(engine: Engine, store: KVCacheStore, tokens: list[int], doc_ids: list[str], owner: str,
                  should_stop: Callable[[], bool] | None = None,
                  chunks: list[int] | tuple[int, ...] = ()) -> PrefixResult:
    """Make the context start with ``tokens``: reuse it, restore it from disk, or prefill and save it.

    Caller must hold ``engine.lock``.

    Args:
        engine: the loaded engine.
        store: the cache store (RAM and disk tiers).
        tokens: prefix token ids (system instructions plus documents).
        doc_ids: the documents in the prefix, recorded in the sidecar.
        owner: recorded in the sidecar.
        should_stop: makes a prefill preemptible (checked every ``PREEMPTIBLE_CHUNK_TOKENS``).
        chunks: for a RAG turn's prefix of retrieved chunks, each ``doc_ids`` entry's chunk
            index (recorded in the sidecar); empty for whole documents.

    Returns:
        Which tier served it and what it cost.

    Raises:
        Interrupted: ``should_stop`` stopped the prefill; the context holds part of the prefix.
    """
    claim_context(engine, owner)
    if engine.context_tokens[: len(tokens)] == tokens:
        return PrefixResult("live", len(tokens))
    fp = fingerprint(engine)
    key = entry_key(fp, tokens, owner)
    start = time.perf_counter()
    tier, state_bytes = _restore(engine, store, key, fp, tokens)
    if tier:
        return PrefixResult(tier, len(tokens), restore_s=time.perf_counter() - start, state_bytes=state_bytes)
    chained = _restore_shorter_set(engine, store, fp, tokens, doc_ids, owner, chunks)
    restore_s = time.perf_counter() - start
    result = _prefill_and_save(engine, store, key, fp, tokens, doc_ids, owner, should_stop, chunks)
    return PrefixResult("miss", result.n_tokens, restore_s=restore_s if chained else 0.0, prefill_s=result.prefill_s,
                        state_bytes=result.state_bytes, chained_tokens=chained,
                        prefilled_tokens=result.prefilled_tokens)


def _restore(engine: Engine, store: KVCacheStore, key: str, fp: dict, tokens: list[int]) -> tuple[str, int]:
    """Load entry ``key`` (holding ``tokens``) into the context from RAM or disk.

    Returns:
        ``(tier, state_bytes)``: tier ``ram`` or ``disk``, or ``("", 0)`` when the entry is
        missing, invalid or rejected (then deleted).
    """
    state, tier = store.fetch(key, fp, tokens)
    if state is None:
        return "", 0
    try:
        engine.set_state(state, tokens)
    except RuntimeError as exc:  # a state llama.cpp rejects is as bad as a failed checksum
        log.warning("KV cache %s unusable (%s); recomputing", key, exc)
        store.delete(key)
        return "", 0
    return tier, len(state)


def _restore_shorter_set(engine: Engine, store: KVCacheStore, fp: dict, tokens: list[int], doc_ids: list[str],
                         owner: str, chunks: list[int] | tuple[int, ...] = ()) -> int:
    """Prefix chaining: restore the cached prefix of the longest document (or chunk) set that
    ``doc_ids`` (with ``chunks``) starts with (e.g. ``[A]`` for ``[A, B]``), when it shares more
    tokens with ``tokens`` than the context already does.

    Returns:
        How many of ``tokens`` the context now holds from that entry (0 when none was used).
    """
    if len(doc_ids) < 2:  # a single document has no shorter set to start from
        return 0
    have = common_prefix_len(engine.context_tokens, tokens)
    parts = prefix_parts(doc_ids, chunks)
    best = None
    for e in store.entries():
        n = len(e.doc_ids)
        if e.fingerprint == fp and e.owner == owner and 0 < n < len(doc_ids) and e.parts == parts[:n]:
            if best is None or n > len(best.doc_ids):
                best = e
    if best is None:
        return 0
    shorter = store.tokens(best.key)
    if not shorter or common_prefix_len(shorter, tokens) <= have:
        return 0
    if not _restore(engine, store, best.key, fp, shorter)[0]:
        return 0
    return common_prefix_len(shorter, tokens)
