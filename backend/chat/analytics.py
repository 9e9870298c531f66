"""Analytics over the answers a user got: one point per answer, read from the metrics saved with it.

Every answer's metrics (``backend.chat.metrics``) are stored with it in its session's history, so the
points are the user's saved answers; a deleted or expired chat drops out with its history.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from backend.chat.sessions import SessionNotFound, SessionStore

CACHE_HIT_TIERS = ("live", "ram", "disk")  # the prefix was reused, not prefilled
TIME_RANGES_S = {"Last hour": 3600.0, "Last day": 86400.0, "Last week": 7 * 86400.0, "All time": None}


@dataclass(frozen=True)
class AnswerPoint:
    """One answer's numbers.

    Attributes:
        at: when it was saved, Unix seconds.
        session_id / session_title: its chat.
        mode: ``cag``, ``rag`` or ``chat``.
        cache_tier: where its prefix came from: ``live``, ``ram``, ``disk`` or ``miss`` (``remote`` for a server).
        ttft_s: time to first token, seconds (None when it produced no token).
        reused_tokens / prefill_tokens: prompt tokens taken from a cache / evaluated, tokens.
        completion_tokens: tokens generated.
        decode_tokens_per_s: generation speed (None for answers under two tokens).
        retrieval_s: seconds the search took (0 when the turn did not search).
    """

    at: float
    session_id: str
    session_title: str
    mode: str
    cache_tier: str
    ttft_s: float | None
    reused_tokens: int
    prefill_tokens: int
    completion_tokens: int
    decode_tokens_per_s: float | None
    retrieval_s: float


def answer_points(sessions: SessionStore, owner: str, session_id: str | None = None,
                  since: float | None = None) -> list[AnswerPoint]:
    """The owner's answers with metrics, oldest first.

    Args:
        sessions: the session store.
        owner: whose answers.
        session_id: only this chat (None: all of the owner's chats).
        since: only answers saved at or after this Unix time (None: all).

    Returns:
        One point per assistant message that carries metrics.

    Raises:
        SessionError: Redis unreachable.
    """
    ids = [session_id] if session_id else [s.session_id for s in sessions.list(owner)]
    points = []
    for sid in ids:
        try:
            session = sessions.get(owner, sid)
        except SessionNotFound:  # expired between the listing and the read
            continue
        for m in session.messages:
            metrics = m.get("metrics")
            if m.get("role") != "assistant" or not metrics or (since is not None and m.get("created_at", 0) < since):
                continue
            points.append(AnswerPoint(
                at=float(m.get("created_at", session.last_updated)), session_id=sid,
                session_title=session.title or "Untitled", mode=metrics.get("mode", "chat"),
                cache_tier=metrics.get("cache_tier") or "miss", ttft_s=metrics.get("ttft_s"),
                reused_tokens=int(metrics.get("reused_tokens") or 0), prefill_tokens=int(metrics.get("prefill_tokens") or 0),
                completion_tokens=int(metrics.get("completion_tokens") or 0),
                decode_tokens_per_s=metrics.get("decode_tokens_per_s"), retrieval_s=float(metrics.get("retrieval_s") or 0.0)))
    return sorted(points, key=lambda p: p.at)


def since_for(time_range: str, now: float | None = None) -> float | None:
    """The Unix time a ``TIME_RANGES_S`` label starts at (None for all time or an unknown label)."""
    span = TIME_RANGES_S.get(time_range)
    return None if span is None else (now if now is not None else time.time()) - span


def totals(points: list[AnswerPoint]) -> dict:
    """Totals over answers.

    Args:
        points: the answers.

    Returns:
        ``answers``; ``prompt_tokens``, ``reused_tokens``, ``completion_tokens`` (tokens);
        ``reuse_ratio`` (reused / prompt tokens); ``cache_hit_rate`` (share of document answers, CAG or
        RAG, whose prefix came from a cache tier rather than a prefill); ``median_ttft_s`` and
        ``median_decode_tokens_per_s`` (None with no data).
    """
    prompt = sum(p.reused_tokens + p.prefill_tokens for p in points)
    reused = sum(p.reused_tokens for p in points)
    with_docs = [p for p in points if p.mode in ("cag", "rag")]
    ttfts = [p.ttft_s for p in points if p.ttft_s is not None]
    speeds = [p.decode_tokens_per_s for p in points if p.decode_tokens_per_s]
    return {
        "answers": len(points),
        "prompt_tokens": prompt,
        "reused_tokens": reused,
        "completion_tokens": sum(p.completion_tokens for p in points),
        "reuse_ratio": reused / prompt if prompt else 0.0,
        "cache_hit_rate": (sum(p.cache_tier in CACHE_HIT_TIERS for p in with_docs) / len(with_docs)) if with_docs else 0.0,
        "median_ttft_s": statistics.median(ttfts) if ttfts else None,
        "median_decode_tokens_per_s": statistics.median(speeds) if speeds else None,
    }
