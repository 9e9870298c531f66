"""A session as a file: Markdown for people, JSON for programs; both carry messages, sources and metrics."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict

from backend.chat.metrics import budget_line, metrics_line
from backend.chat.sessions import Session
from backend.chat.text import printable

FORMATS = ("markdown", "json")


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def to_markdown(session: Session) -> str:
    """The conversation as Markdown: a heading per message, each answer's metrics and numbered sources."""
    out = [f"# {session.title or 'Untitled chat'}", "",
           f"_Created {_stamp(session.created_at)}, last updated {_stamp(session.last_updated)}._", ""]
    for m in session.messages:
        who = "You" if m["role"] == "user" else "Assistant"
        out += [f"## {who} · {_stamp(m.get('created_at', session.created_at))}", "", m["content"], ""]
        if m.get("stopped"):
            out += ["_(stopped)_", ""]
        if m.get("metrics"):
            out += [f"<sub>{metrics_line(m['metrics'])}</sub>", ""]
            if budget_line(m["metrics"]):
                out += [f"<sub>{budget_line(m['metrics'])}</sub>", ""]
        if m.get("grounding"):
            note = f" {m['grounding_note']}" if m.get("grounding_note") else ""
            out += [f"_Grounding: {m['grounding'].replace('_', ' ')}.{note}_", ""]
        for i, src in enumerate(m.get("sources") or [], 1):
            quote = src.get("quote") or src.get("text", "")  # answers saved before citations carried the chunk
            out.append(f"{i}. **{src['name']}**, {source_location(src)}: “{' '.join(quote.split())[:300]}”")
        if m.get("closest"):
            c = m["closest"]
            out += [f"- Closest passage: **{c['name']}**, {source_location(c)}: “{' '.join(c['quote'].split())[:300]}”"]
        for i, web in enumerate(m.get("web_sources") or [], 1):
            out.append(f"- [W{i}] [{web['title']}]({web['url']})")
        if m.get("sources") or m.get("web_sources") or m.get("closest"):
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def source_location(source: dict, sep: str = ", ") -> str:
    """Where a cited passage or chunk sits: ``p. 3 (OCR), Section``.

    Args:
        source: a ``Source`` or ``Hit`` dict as stored with an answer (``ocr`` missing in older ones).
        sep: between the page and the section.
    """
    page = f"p. {source['page']}" + (" (OCR)" if source.get("ocr") else "")
    return page + (f"{sep}{source['section']}" if source.get("section") else "")


def export_session(session: Session, fmt: str) -> tuple[str, str]:
    """Render a session for download.

    Args:
        session: the session with its messages (``SessionStore.get``).
        fmt: ``markdown`` or ``json``.

    Returns:
        ``(filename, content)``: the file name (title-based, ``.md`` or ``.json``) and its text.

    Raises:
        ValueError: unknown format (the message is one sentence for the user).
    """
    if fmt not in FORMATS:
        raise ValueError("Unknown export format; use markdown or json.")
    session = Session(**_cleaned(asdict(session)))
    stem = re.sub(r"[^A-Za-z0-9]+", "-", session.title).strip("-")[:50] or "chat"
    if fmt == "json":
        return f"{stem}.json", json.dumps(asdict(session), ensure_ascii=False, indent=2)
    return f"{stem}.md", to_markdown(session)


def _cleaned(value):
    """``value`` with every string in it made printable (``printable``: no control or bidi-override characters,
    no lone surrogates), for an export that carries only cleaned text whatever was stored before."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_cleaned(v) for v in value]
    return value
