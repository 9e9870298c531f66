"""Small helpers shared by the UI panels: owner lookup, error mapping, formatting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import gradio as gr

from backend.chat import ChatError, SessionError, budget_line, metrics_line, seconds
from backend.documents import DocumentError
from backend.inference import EngineError, ModelDownloadError
from backend.kvcache import CacheNotFound

__all__ = ["USER_ERRORS", "budget_line", "human_bytes", "metrics_line", "owner_of", "seconds", "user_errors"]

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
