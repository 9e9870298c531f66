"""What goes into the user turn besides the question: web results, recalled memory, the date and
time, and the thinking switch. None of it enters the cached prefix, so the prefix stays reusable.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field

from backend.chat.memory import MemoryIndex, memory_user_text
from backend.chat.web_search import WebSearchError, needs_web, search_web, web_user_text
from backend.config import Settings


@dataclass(frozen=True)
class TurnInput:
    """The user content a turn sends, and what went into it.

    Attributes:
        sent: the user content as the prompt carries it.
        web_sources: web results used (``WebResult`` dicts: title, url, snippet).
        web_note: why the web was not used although it was asked for ("" otherwise).
        memories: how many past messages from other sessions were recalled into it.
    """

    sent: str
    web_sources: list[dict] = field(default_factory=list)
    web_note: str = ""
    memories: int = 0


# Questions whose answer depends on the present date or time: what ``turn_datetime="auto"`` dates.
_ABOUT_TIME = re.compile(
    r"\b(?:today|today's|tonight|now|nowadays|currently|current|presently|at present|yesterday|tomorrow|"
    r"(?:this|next|last|coming|past) (?:week|weekend|month|year|quarter)|ago|so far|to date|as of|"
    r"(?:what|which) (?:day|date|time|year|month) (?:is it|it is)|what is the (?:date|time)\b|"
    r"how (?:old|long ago|many (?:days|weeks|months|years) (?:ago|since|until|left|from now))|how long (?:has it been|since)|since when|still|anymore|latest|upcoming)\b",
    re.IGNORECASE)


def asks_about_time(question: str) -> bool:
    """True when a question depends on the present date or time ("today", "now", "current", "this year",
    "how long ago"): only those get the date line with ``turn_datetime="auto"``.

    A date or a year ("what happened in 1943?", "what year was it built?") asks about that date, not about
    today: such questions go as typed, so the reader cannot take the date line for the answer (SQuAD questions
    naming a year got it, and SmolLM2 answered one with "19:43 UTC": issue 43)."""
    return bool(_ABOUT_TIME.search(question))


def date_line(now: float) -> str:
    """The date and time ``now`` (seconds since the epoch) in local time, bracketed:
    ``[Tuesday, 01 December 2026, 10:00 UTC]``."""
    return f"[{time.strftime('%A, %d %B %Y, %H:%M %Z', time.localtime(now))}]"


def dated(text: str, now: float) -> str:
    """``text`` with ``date_line(now)`` on a line before it, as ``compose`` sends a question."""
    return f"{date_line(now)}\n{text}"


def compose(settings: Settings, memory: MemoryIndex | None, owner: str, session_id: str, message: str, *,
            now: float, web: bool | None = None, remember: bool | None = None,
            switch: bool | None = None) -> TurnInput:
    """Build the user content for ``message``.

    Args:
        settings: ``search_url`` and its limits, ``remember_across_sessions``, ``memory_top_k``,
            ``turn_datetime`` (``auto``: the date line only when ``asks_about_time(message)``).
        memory: the long-term memory index (None: off).
        owner / session_id: whose memory, and the session it must not recall from.
        message: the question as typed.
        now: the time the date line shows, seconds since the epoch.
        web: search the web; None = when ``search_url`` is set and the question is time-sensitive.
        remember: recall from other sessions; None = ``remember_across_sessions``.
        switch: append Qwen3's ``/think`` (True) or ``/no_think`` (False); None = neither.

    Returns:
        The content and its parts. A failed web search is noted, never raised.
    """
    text, web_sources, web_note = message, [], ""
    if (bool(settings.search_url) and needs_web(message)) if web is None else web:
        try:
            results = search_web(settings.search_url, message, limit=settings.search_max_results,
                                 timeout_s=settings.search_timeout_s)
            text, web_sources = web_user_text(message, results), [asdict(r) for r in results]
            web_note = "" if results else "Web search found nothing for this question."
        except WebSearchError as exc:
            web_note = str(exc)
    recalled = []
    if memory is not None and (settings.remember_across_sessions if remember is None else remember):
        recalled = memory.recall(owner, session_id, message, settings.memory_top_k)
        text = memory_user_text(text, recalled)
    if settings.turn_datetime == "on" or (settings.turn_datetime == "auto" and asks_about_time(message)):
        text = dated(text, now)
    if switch is not None:
        text = f"{text} {'/think' if switch else '/no_think'}"
    return TurnInput(text, web_sources, web_note, len(recalled))
