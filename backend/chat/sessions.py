"""Chat sessions in Redis.

Key layout (``{o}`` = owner, ``{s}`` = session id, a 32-hex uuid4):

* ``kvc:{o}:session:{s}``          hash: ``title``, ``created_at``, ``last_updated`` (Unix seconds),
  ``system_prompt`` (only when the session has its own)
* ``kvc:{o}:session:{s}:messages`` list of JSON messages, oldest first:
  ``{"role", "content", "created_at", "sent"?, "metrics"?, "sources"?, "stopped"?}`` (``sent``: the
  user content exactly as the prompt carried it, when it differs from ``content``)
* ``kvc:{o}:sessions``             sorted set of session ids scored by ``last_updated``

Both per-session keys carry a TTL of ``session_ttl_s``, refreshed on every read or write.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from backend.chat.text import clean_text, printable
from backend.storage.paths import is_hex_id


class SessionError(RuntimeError):
    """A session operation failed; ``str(err)`` is one sentence for the user."""


class SessionNotFound(SessionError):
    """The session id is unknown or the session expired."""


@dataclass
class Session:
    """A session and its messages.

    Attributes:
        session_id: 32-hex id.
        title: short title ("" until the first message).
        created_at / last_updated: Unix seconds.
        messages: dicts as stored, oldest first.
        system_prompt: the session's own instructions ("" = the configured ones).
    """

    session_id: str
    title: str
    created_at: float
    last_updated: float
    messages: list[dict[str, Any]] = field(default_factory=list)
    system_prompt: str = ""


def _unavailable(exc: Exception) -> SessionError:
    return SessionError("The session store (Redis) is not reachable, so chat history can't be read or saved; "
                        "restart the app or check REDIS_URL.")


class SessionStore:
    """Sessions for all owners in one Redis database.

    Args:
        client: a redis-py client (``decode_responses=True``).
        ttl_s: lifetime after last use, seconds.
        on_delete: called after a session is deleted (the clean-up that removes its bytes from Redis's files).
    """

    def __init__(self, client: redis.Redis, ttl_s: int, on_delete: Callable[[], object] = lambda: None):
        self.r = client
        self.ttl_s = ttl_s
        self.on_delete = on_delete

    @staticmethod
    def _key(owner: str, sid: str) -> str:
        """The session's Redis key; an id the app could not have made (32 hex characters) is never one.

        Raises:
            SessionNotFound: ``sid`` is not a session id.
        """
        if not is_hex_id(sid):
            raise SessionNotFound("There is no session with that id; pick a chat from the list or start a new one.")
        return f"kvc:{owner}:session:{sid}"

    def _touch(self, pipe, owner: str, sid: str, now: float) -> None:
        key = self._key(owner, sid)
        pipe.hset(key, "last_updated", now)
        pipe.expire(key, self.ttl_s)
        pipe.expire(key + ":messages", self.ttl_s)
        pipe.zadd(f"kvc:{owner}:sessions", {sid: now})

    def create(self, owner: str) -> str:
        """Create an empty session and return its id."""
        sid = uuid.uuid4().hex
        now = time.time()
        try:
            pipe = self.r.pipeline()
            pipe.hset(self._key(owner, sid), mapping={"title": "", "created_at": now, "last_updated": now})
            self._touch(pipe, owner, sid, now)
            pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return sid

    def get(self, owner: str, sid: str) -> Session:
        """Load a session with its messages and refresh its TTL.

        Raises:
            SessionNotFound: unknown or expired id.
            SessionError: Redis unreachable.
        """
        key = self._key(owner, sid)
        try:
            meta = self.r.hgetall(key)
            if not meta:
                raise SessionNotFound(f"Session {sid} does not exist or has expired; start a new chat.")
            raw = self.r.lrange(key + ":messages", 0, -1)
            pipe = self.r.pipeline()
            pipe.expire(key, self.ttl_s)
            pipe.expire(key + ":messages", self.ttl_s)
            pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return Session(sid, meta.get("title", ""), float(meta["created_at"]), float(meta["last_updated"]),
                       [json.loads(m) for m in raw], meta.get("system_prompt", ""))

    def append(self, owner: str, sid: str, *messages: dict[str, Any]) -> None:
        """Append messages to a session (sets the title from the first user message).

        Raises:
            SessionNotFound: unknown or expired id.
            SessionError: Redis unreachable.
        """
        key = self._key(owner, sid)
        now = time.time()
        try:
            if not self.r.exists(key):
                raise SessionNotFound(f"Session {sid} does not exist or has expired; start a new chat.")
            pipe = self.r.pipeline()
            for m in messages:
                pipe.rpush(key + ":messages", json.dumps({"created_at": now, **m}))
            first_user = next((m["content"] for m in messages if m.get("role") == "user"), None)
            if first_user and not self.r.hget(key, "title"):
                pipe.hset(key, "title", " ".join(printable(first_user).split())[:60])
            self._touch(pipe, owner, sid, now)
            pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def list(self, owner: str, limit: int = 200) -> list[Session]:
        """The owner's sessions, most recently updated first, without their messages.

        Ids whose keys have expired are dropped from the index on the way.

        Args:
            owner: the user.
            limit: most sessions returned.

        Raises:
            SessionError: Redis unreachable.
        """
        index = f"kvc:{owner}:sessions"
        try:
            ids = self.r.zrevrange(index, 0, limit - 1)
            pipe = self.r.pipeline()
            for sid in ids:
                pipe.hgetall(f"kvc:{owner}:session:{sid}")
            metas = pipe.execute()
            gone = [sid for sid, meta in zip(ids, metas) if not meta]
            if gone:
                self.r.zrem(index, *gone)
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return [Session(sid, m.get("title", ""), float(m["created_at"]), float(m["last_updated"]))
                for sid, m in zip(ids, metas) if m]

    def _modify(self, owner: str, sid: str, change: Callable[[Any, str], None]) -> None:
        """Apply ``change(pipeline, key)`` to an existing session and mark it as used, atomically.

        Raises:
            SessionNotFound: unknown or expired id.
            SessionError: Redis unreachable.
        """
        key = self._key(owner, sid)
        try:
            if not self.r.exists(key):
                raise SessionNotFound(f"Session {sid} does not exist or has expired; start a new chat.")
            pipe = self.r.pipeline()
            change(pipe, key)
            self._touch(pipe, owner, sid, time.time())
            pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc

    def rename(self, owner: str, sid: str, title: str) -> None:
        """Set a session's title (whitespace collapsed, at most 80 characters).

        Raises:
            SessionError: empty title, or Redis unreachable.
            SessionNotFound: unknown or expired id.
            TextError: the title holds broken Unicode (control characters are removed, ``clean_text``).
        """
        title = " ".join(clean_text(title or "", "The title").split())[:80]
        if not title:
            raise SessionError("The title is empty; type a name for the chat.")
        self._modify(owner, sid, lambda pipe, key: pipe.hset(key, "title", title))

    def truncate(self, owner: str, sid: str, keep: int) -> None:
        """Keep only the first ``keep`` messages (regenerate, undo and edit continue from there).

        Raises:
            SessionNotFound: unknown or expired id.
            SessionError: Redis unreachable.
        """
        def cut(pipe, key: str) -> None:
            if keep > 0:
                pipe.ltrim(key + ":messages", 0, keep - 1)
            else:
                pipe.delete(key + ":messages")

        self._modify(owner, sid, cut)

    def set_system_prompt(self, owner: str, sid: str, text: str) -> None:
        """Give a session its own instructions ("" goes back to the configured ones), cleaned (``clean_text``).

        Raises:
            SessionNotFound: unknown or expired id.
            SessionError: Redis unreachable.
            TextError: the text holds broken Unicode.
        """
        text = clean_text(text or "", "The system prompt").strip()
        self._modify(owner, sid, lambda pipe, key: pipe.hset(key, "system_prompt", text) if text
                     else pipe.hdel(key, "system_prompt"))

    def delete(self, owner: str, sid: str) -> bool:
        """Delete a session; returns False when it did not exist (or ``sid`` is not a session id)."""
        if not is_hex_id(sid):
            return False
        key = self._key(owner, sid)
        try:
            pipe = self.r.pipeline()
            pipe.delete(key, key + ":messages")
            pipe.zrem(f"kvc:{owner}:sessions", sid)
            deleted, _ = pipe.execute()
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        if deleted:
            self.on_delete()
        return bool(deleted)

    def image_names(self) -> set[str]:
        """Every image file name a stored message of any owner refers to (a user message's ``images``), for the
        sweep of ``data_dir/images`` (``backend.chat.images.sweep_images``).

        Raises:
            SessionError: Redis is not reachable (then nothing may be swept).
        """
        names: set[str] = set()
        try:
            for key in self.r.scan_iter(match="kvc:*:session:*:messages", count=1000):
                for raw in self.r.lrange(key, 0, -1):
                    if '"images"' in raw:
                        names.update(json.loads(raw).get("images") or ())
        except redis.RedisError as exc:
            raise _unavailable(exc) from exc
        return names
