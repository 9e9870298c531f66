"""Small helpers shared by the UI panels: owner lookup, error mapping, formatting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from backend.access import QuotaExceeded
from backend.chat import ChatError, SessionError, TextError, budget_line, metrics_line, seconds
from backend.documents import DocumentError, LoadError
from backend.inference import EngineError, ModelDownloadError
from backend.kvcache import CacheNotFound
from backend.storage import size_text as human_bytes  # the one way sizes are printed

__all__ = ["USER_ERRORS", "budget_line", "check_upload", "every_owner", "human_bytes", "is_admin", "loading_line",
           "metrics_line", "owner_of", "question_slot", "require_admin", "seconds", "user_errors"]

USER_ERRORS = (ChatError, DocumentError, EngineError, SessionError, ModelDownloadError, CacheNotFound, QuotaExceeded,
               LoadError, TextError)
PART_NAMES = {"documents": "the documents' index", "embedder": "the embedding model (for search)", "ocr": "OCR"}


def loading_line(readiness: dict[str, str], parts: tuple[str, ...] = ("documents", "embedder")) -> str:
    """One line naming what is still loading after a start (``Services.readiness``), or "" when these parts are
    ready: "⏳ Still loading the documents' index and the embedding model (for search); your question waits for
    what it needs." """
    loading = [PART_NAMES[p] for p in parts if readiness.get(p, "").startswith(("waiting", "loading"))]
    if not loading:
        return ""
    return (f"⏳ Still loading {' and '.join(loading)} (once, after a start); this waits for what it needs, "
            "a few seconds.")


ANONYMOUS = {"owner": "local"}  # build_app sets None where visitors must sign in with Hugging Face first


def oauth_username(request: gr.Request | None) -> str | None:
    """The Hugging Face user signed in through ``gr.LoginButton`` (a Space with ``hf_oauth``), or None.

    Gradio gives each handler the signed-in user as a ``gr.OAuthProfile`` (None once the sign-in has expired);
    ``components.guard`` asks for it on every handler that takes the request and keeps it on the request.
    """
    profile = getattr(request, "oauth_profile", None) if request is not None else None
    return getattr(profile, "username", None) or None


def owner_of(request: gr.Request | None) -> str:
    """Who a request acts for: the Gradio sign-in name, else the Hugging Face OAuth name, else ``local``.

    Raises:
        gr.Error: nobody is signed in where sign-in with Hugging Face is required.
    """
    name = getattr(request, "username", None) or oauth_username(request)
    if name:
        return name
    if ANONYMOUS["owner"] is None:
        raise gr.Error("Sign in with Hugging Face first (the button at the top of the page).", print_exception=False)
    return ANONYMOUS["owner"]


def is_admin(services, request: gr.Request | None) -> bool:
    """Whether this request may manage models and read logs.

    With sign-in off, the single user of a loopback-only app is the admin, and nobody is when the app is
    reachable from other machines (``--allow-anonymous``). Signed in: the names in the ``admins`` setting
    and those added with ``python -m backend.access add-user NAME --admin``.

    Args:
        services: the app's services (settings and users file).
        request: the Gradio request (None: an in-process call, treated as sign-in off).
    """
    name = getattr(request, "username", None) or oauth_username(request)
    if name is None:
        return not services.settings.exposed
    return name in services.settings.admins or (services.users is not None and name in services.users.admins())


def every_owner(services, request: gr.Request | None) -> bool:
    """Whether this request sees (and may delete) every user's KV caches: a signed-in admin."""
    return bool(getattr(request, "username", None) or oauth_username(request)) and is_admin(services, request)


def require_admin(services, request: gr.Request | None) -> None:
    """Refuse a model-management or log call from a non-admin with one sentence (hiding the UI is not enough).

    Raises:
        gr.Error: the request is not an admin's.
    """
    if not is_admin(services, request):
        raise gr.Error("Only an admin can manage models and read logs; ask one to do it, or to add you with "
                       "`python -m backend.access add-user NAME --admin`.", print_exception=False)


def check_upload(services, request: gr.Request | None, path: Path) -> None:
    """Apply the user's upload quotas (documents kept, bytes stored, uploads per day) to one file.

    Admins, and the single user of a loopback app without sign-in, are exempt.

    Raises:
        DocumentError: the uploaded file is gone from Gradio's upload folder (removed before it was read).
        QuotaExceeded: over a quota; the sentence says which.
    """
    if not Path(path).is_file():
        raise DocumentError(f"The uploaded file {Path(path).name} is no longer on the server; upload it again.")
    if services.quotas is None or is_admin(services, request):
        return
    owner = owner_of(request)
    docs = services.documents.list(owner)
    services.quotas.upload(owner, Path(path).stat().st_size, sum(d.size_bytes for d in docs), len(docs))


@contextlib.contextmanager
def question_slot(services, request: gr.Request | None) -> Iterator[None]:
    """Count a question against the user's rate and hold one of their concurrent-turn slots while it runs.

    Raises:
        QuotaExceeded: over ``questions_per_minute`` (the sentence gives the wait) or ``max_concurrent_turns``.
    """
    if services.quotas is None or is_admin(services, request):
        yield
        return
    owner = owner_of(request)
    services.quotas.question(owner)
    with services.quotas.turn(owner):
        yield


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the backend's user-facing errors into ``gr.Error`` with the same sentence."""
    try:
        yield
    except USER_ERRORS as exc:
        raise gr.Error(str(exc), print_exception=False) from exc
