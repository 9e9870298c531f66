"""Small helpers shared by the UI panels: owner lookup, error mapping, formatting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gradio as gr

from backend.cache_catalog import CacheNotFound
from backend.chat import ChatError
from backend.engine import EngineError
from backend.extract import DocumentError
from backend.model_registry import ModelDownloadError
from backend.sessions import SessionError

USER_ERRORS = (ChatError, DocumentError, EngineError, SessionError, ModelDownloadError, CacheNotFound)


def owner_of(request: gr.Request | None) -> str:
    """The signed-in Gradio username, or ``local`` when sign-in is off."""
    return getattr(request, "username", None) or "local"


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the backend's user-facing errors into ``gr.Error`` with the same sentence."""
    try:
        yield
    except USER_ERRORS as exc:
        raise gr.Error(str(exc), print_exception=False) from exc


def human_bytes(n: float | None) -> str:
    """``1536`` -> ``1.5 KB`` (binary units)."""
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def seconds(s: float) -> str:
    """A duration for people: ``0.0123`` -> ``12 ms``, ``2.5`` -> ``2.50 s``."""
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.2f} s"


def metrics_line(m: dict) -> str:
    """One line of per-answer metrics, shown under the answer."""
    tier = m.get("cache_tier", "?") + (" snapshot" if m.get("snapshot_tokens") else "")
    parts = [m.get("mode", "?"), f"prompt {m.get('prompt_tokens', 0):,} tok",
             f"reused {m.get('reused_tokens', 0):,} tok ({tier})"]
    if m.get("restore_s"):
        parts.append(f"restore {seconds(m['restore_s'])}")
    if m.get("ttft_s") is not None:
        parts.append(f"TTFT {seconds(m['ttft_s'])}")
    if m.get("decode_tokens_per_s") is not None:
        parts.append(f"{m['decode_tokens_per_s']:.1f} tok/s")
    if m.get("stop_reason") == "stopped":
        parts.append("stopped")
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
