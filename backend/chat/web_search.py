"""Web search for a turn: a SearXNG instance's JSON API over httpx, and a small router that turns
it on for time-sensitive questions.

Results go into the user turn (never the cached prefix), and their titles and URLs are listed as
the answer's sources. A search that fails never fails the turn: the answer goes ahead without it
and says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

# Words that make a question depend on the present: the router's whole vocabulary (lowercase).
_TIME_SENSITIVE = re.compile(
    r"\b(today|tonight|now|currently|current|latest|newest|recent|recently|this (week|month|year)|yesterday|"
    r"tomorrow|news|breaking|price|prices|stock|weather|forecast|score|scores|election|released?|"
    r"upcoming|live|20[2-9]\d)\b", re.IGNORECASE)


class WebSearchError(RuntimeError):
    """The search could not run; ``str(err)`` is one sentence for the user."""


@dataclass(frozen=True)
class WebResult:
    """One search result: its title, URL and the engine's snippet."""

    title: str
    url: str
    snippet: str


def needs_web(question: str) -> bool:
    """The route classifier: True when the question asks about the present (news, prices, "latest",
    dates), which documents and the model's training cannot answer."""
    return bool(_TIME_SENSITIVE.search(question))


def search_web(endpoint: str | None, query: str, *, limit: int = 5, timeout_s: float = 5.0) -> list[WebResult]:
    """Query a SearXNG instance (``GET <endpoint>?q=...&format=json``).

    Args:
        endpoint: the instance's search URL, e.g. ``http://localhost:8888/search``; None = not set up.
        query: the question.
        limit: most results kept.
        timeout_s: connect and read timeout, seconds.

    Returns:
        Up to ``limit`` results with a URL, in the engine's order.

    Raises:
        WebSearchError: no endpoint, timeout, unreachable, an HTTP error status, or not SearXNG JSON.
    """
    if not endpoint:
        raise WebSearchError("Web search is not set up (no search_url), so this answer does not use the web.")
    try:
        r = httpx.get(endpoint, params={"q": query, "format": "json"}, timeout=timeout_s)
    except httpx.TimeoutException as exc:
        raise WebSearchError(f"Web search timed out after {timeout_s:g} s, so this answer does not use the "
                             "web.") from exc
    except httpx.HTTPError as exc:
        raise WebSearchError("Web search is unreachable, so this answer does not use the web.") from exc
    if r.status_code != 200:
        raise WebSearchError(f"Web search failed (HTTP {r.status_code}), so this answer does not use the web.")
    try:
        items = r.json().get("results") or []
    except ValueError as exc:
        raise WebSearchError("Web search sent something other than SearXNG JSON, so this answer does not "
                             "use the web.") from exc
    out = [WebResult(" ".join(str(i.get("title") or i["url"]).split()), str(i["url"]),
                     " ".join(str(i.get("content") or "").split())) for i in items if i.get("url")]
    return out[:limit]


def web_user_text(question: str, results: list[WebResult]) -> str:
    """The question with numbered web results ahead of it (they go in the user turn)."""
    if not results:
        return question
    lines = "\n".join(f"[W{i}] {r.title} ({r.url}): {r.snippet}" for i, r in enumerate(results, 1))
    return f"Web search results:\n{lines}\n\n{question}"
