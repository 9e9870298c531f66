"""Calling the app's named endpoints over raw HTTP, as a client that is not ``gradio_client`` does: any JSON,
any number of arguments (``POST /gradio_api/call/<name>``, then the event stream of its result)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Answer:
    """What an endpoint answered.

    Attributes:
        ok: it completed (``event: complete``).
        data: its result (the last ``data`` line, parsed: the one output), or None.
        error: the error sentence shown to the user (None: a blank error, or it completed).
        status: the HTTP status of the call itself.
        raw: the event stream as text.
    """

    ok: bool
    data: object
    error: str | None
    status: int
    raw: str


def call(url: str, name: str, data: list, cookies: httpx.Cookies | None = None, timeout_s: float = 120.0) -> Answer:
    """Send ``data`` (any JSON values, written with ``ensure_ascii`` so lone surrogates travel as ``\\ud800``) to
    endpoint ``name`` and read its answer to the end."""
    body = json.dumps({"data": data}, ensure_ascii=True)
    with httpx.Client(base_url=url.rstrip("/"), cookies=cookies, timeout=timeout_s) as client:
        posted = client.post(f"/gradio_api/call/{name}", content=body, headers={"content-type": "application/json"})
        if posted.status_code != 200:
            return Answer(False, None, None, posted.status_code, posted.text)
        raw = client.get(f"/gradio_api/call/{name}/{posted.json()['event_id']}").text
    event, payload = None, None
    for line in raw.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            payload = line.split(":", 1)[1].strip()
    parsed = json.loads(payload) if payload not in (None, "", "null") else None
    if event == "complete":  # the outputs as a list: one endpoint, one output
        return Answer(True, parsed[0] if isinstance(parsed, list) and len(parsed) == 1 else parsed, None, 200, raw)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return Answer(False, None, error, 200, raw)
