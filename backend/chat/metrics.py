"""The metrics recorded with every answer, stored with it in Redis and shown under it.

| metric | meaning |
|---|---|
| ``mode`` | ``cag``, ``rag`` or ``chat`` (no documents) |
| ``mode_reason`` | why that mode, one sentence (auto's rule: ``backend/chat/modes.py``) |
| ``grounding`` / ``attribution_s`` | the answer's verdict (``supported``, ``partial``, ``not_found``; None without documents) / seconds its sources took to find, after the last token |
| ``cache_tier`` | ``live``, ``ram``, ``disk``, ``slot`` (a replica's slot file) or ``miss``: where the prefix came from; with replicas ``slot``, ``restored``, ``exported`` or ``miss`` (``ReplicaPrefix``) |
| ``replica`` | the llama-server replica that answered (its URL), only with replicas |
| ``restore_s`` | seconds to restore the saved state |
| ``retrieval_s`` | seconds the hybrid search of a RAG turn took (0 otherwise) |
| ``prefill_tokens`` / ``reused_tokens`` | prompt tokens evaluated this turn / taken from a cache |
| ``ttft_s`` / ``decode_tokens_per_s`` | time to first token (from sending, waits included), seconds / generation speed |
| ``queue_s`` / ``queue_place`` | seconds waited for a free sequence / the place first told (0: none waited) |
| ``snapshot_tokens`` / ``chained_tokens`` | tokens from the session's snapshot / a shorter set's prefix |
| ``server_cached_tokens`` | prompt tokens a remote server reports it took from its prefix cache (None: not reported) |
| ``prefix_tokens``, ``history_tokens``, ``retrieved_tokens``, ``question_tokens``, ``max_tokens`` | how ``n_ctx`` was split |
| ``prefix_chunks`` | RAG chunks in the cached prefix (their KV comes from ``cache_tier`` like a document's) |
| ``image_tokens`` / ``image_encode_s`` | prompt tokens that stand for the message's images / seconds spent encoding them this turn (0 when their KV was reused) |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.inference import StreamStats
from backend.kvcache import PrefixResult

if TYPE_CHECKING:
    from backend.chat.planner import Plan


def turn_metrics(plan: Plan, max_tokens: int, n_ctx: int, prefix: PrefixResult, stats: StreamStats, start: float,
                 stopped: bool, queue_s: float = 0.0, queue_place: int = 0) -> dict:
    """The per-answer metrics (seconds, tokens).

    Args:
        plan: the turn's plan (mode, prompt, retrieved tokens).
        max_tokens: tokens reserved for the answer.
        n_ctx: the context window, tokens.
        prefix: how the prefix got into the context.
        stats: what the generation did.
        start: ``time.perf_counter()`` when the turn was handed to the engine.
        stopped: the user stopped the answer.
        queue_s: seconds it waited for a free sequence.
        queue_place: its place in line when it first waited (0: it did not wait).

    Returns:
        A JSON-able dict (see the module docstring).
    """
    prompt = plan.prompt
    reused = stats.reused_tokens  # counted when the sequence got its prompt: a prefix prefilled this turn is not in it
    ttft = (stats.first_token_at - start) if stats.first_token_at else None
    decode_s = (stats.finished_at - stats.first_token_at) if stats.first_token_at and stats.finished_at else 0.0
    return {
        "mode": plan.mode,
        "mode_reason": plan.reason,
        "prompt_tokens": stats.prompt_tokens,
        "reused_tokens": reused,
        "prefill_tokens": stats.prompt_tokens - reused,
        "prefix_tokens": prompt.n_prefix,
        "history_messages": prompt.history_messages,
        "history_tokens": prompt.history_tokens,
        "retrieved_tokens": plan.retrieved_tokens,
        "prefix_chunks": len(plan.prefix_chunks),
        "question_tokens": prompt.n_tokens - prompt.n_prefix - prompt.history_tokens - plan.retrieved_tokens,
        "max_tokens": max_tokens,
        "n_ctx": n_ctx,
        "cache_tier": prefix.tier,
        "restore_s": round(prefix.restore_s, 4),
        "retrieval_s": round(plan.retrieval_s, 4),
        "prefix_prefill_s": round(prefix.prefill_s, 4),
        "chained_tokens": prefix.chained_tokens,
        "snapshot_tokens": prefix.snapshot_tokens,
        "server_cached_tokens": stats.server_cached_tokens,
        "ttft_s": round(ttft, 4) if ttft is not None else None,
        "queue_s": round(queue_s, 4),
        "queue_place": queue_place,
        "completion_tokens": stats.completion_tokens,
        "decode_tokens_per_s": round((stats.completion_tokens - 1) / decode_s, 2)
        if stats.completion_tokens > 1 and decode_s > 0 else None,
        "stop_reason": "stopped" if stopped else stats.stop_reason,
        "image_tokens": stats.image_tokens,
        "image_encode_s": round(stats.image_encode_s, 4),
    }


def seconds(s: float) -> str:
    """A duration for people: ``0.0123`` -> ``12 ms``, ``2.5`` -> ``2.50 s``."""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def metrics_line(m: dict) -> str:
    """One line of per-answer metrics, shown under the answer and in exports."""
    tier = m.get("cache_tier", "?") + (" snapshot" if m.get("snapshot_tokens") else "")
    if m.get("prefix_chunks"):
        tier = f"{m['prefix_chunks']} chunk{'s' if m['prefix_chunks'] > 1 else ''} {tier}"
    if m.get("replica"):  # a llama-server replica answered: where, and how the prefix got there
        tier += " on " + m["replica"].split("://", 1)[-1]
    reused = f"reused {m.get('reused_tokens', 0):,} tok ({tier})"
    if tier == "remote":
        cached = m.get("server_cached_tokens")
        reused = "server cache: not reported" if cached is None else f"server cache {cached:,} tok"
    parts = [m.get("mode", "?"), f"prompt {m.get('prompt_tokens', 0):,} tok", reused]
    if m.get("image_tokens"):
        encoded = m.get("image_encode_s", 0.0)
        parts.append(f"image {m['image_tokens']:,} tok, " + (f"encoded in {seconds(encoded)}" if encoded else "reused"))
    if m.get("restore_s"):
        parts.append(f"restore {seconds(m['restore_s'])}")
    if m.get("ttft_s") is not None:
        parts.append(f"TTFT {seconds(m['ttft_s'])}")
    if m.get("queue_place"):
        parts.append(f"waited {seconds(m.get('queue_s', 0.0))} in line")
    if m.get("decode_tokens_per_s") is not None:
        parts.append(f"{m['decode_tokens_per_s']:.1f} tok/s")
    if m.get("stop_reason") == "stopped":
        parts.append("stopped")
    elif m.get("stop_reason") == "replica lost":
        parts.append("cut short: the replica stopped answering, ask again")
    return " · ".join(parts)


def budget_line(m: dict) -> str:
    """How the answer's prompt split ``n_ctx``: prefix, history, retrieved chunks, question and the
    room reserved for the answer (``max_tokens``); empty for metrics saved before it was recorded."""
    if "n_ctx" not in m:
        return ""
    parts = [f"prefix {m['prefix_tokens']:,}", f"history {m['history_tokens']:,}"]
    if m.get("retrieved_tokens"):
        parts.append(f"retrieved {m['retrieved_tokens']:,}")
    parts += [f"question {m['question_tokens']:,}", f"answer ≤ {m['max_tokens']:,}"]
    return f"context {m['n_ctx']:,} tok: " + " · ".join(parts)
