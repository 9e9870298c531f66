"""Per-user rate limits and quotas, kept in Redis so they hold across tabs, clients and restarts.

* questions per minute and uploads per day: moving windows from the ``limits`` library (its Redis storage,
  one sorted list per user and limit), which also says when the oldest hit leaves the window;
* concurrent turns: a Redis counter per user (``INCR`` on start, ``DECR`` on end, with a TTL so a crashed
  process cannot leave a user locked out);
* stored bytes and documents: checked against the user's document table at upload.

Every refusal is ``QuotaExceeded`` with one sentence that names the limit and, for rates, the wait. A limit
of 0 is off. Admins are exempt: the caller skips the checks for them. With Redis unreachable the checks
let the request through (logged): the session store then reports the outage in its own sentence.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis
from limits import RateLimitItemPerDay, RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from backend.storage.disk import size_text

log = logging.getLogger(__name__)
TURN_TTL_S = 3600  # a concurrent-turn counter outlives no turn by more than this


class QuotaExceeded(RuntimeError):
    """A user hit a limit; ``str(err)`` is one sentence with what to do (and how long to wait)."""


@dataclass(frozen=True)
class QuotaSettings:
    """The limits, each 0 for off.

    Attributes:
        questions_per_minute: chat turns a user may start in any 60 s.
        uploads_per_day: documents a user may upload in any 24 h.
        stored_bytes: total size of a user's uploaded files, bytes.
        documents: how many documents a user may keep.
        concurrent_turns: answers a user may have streaming at once.
    """

    questions_per_minute: int = 0
    uploads_per_day: int = 0
    stored_bytes: int = 0
    documents: int = 0
    concurrent_turns: int = 0


def _wait(seconds: float) -> str:
    """``42`` -> ``42 s``, ``3700`` -> ``1 h 2 min``."""
    s = max(1, math.ceil(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{math.ceil(s / 60)} min"
    return f"{s // 3600} h {math.ceil((s % 3600) / 60)} min"


class Quotas:
    """Checks and counts a user's use.

    Args:
        url: the Redis URL (the app's embedded server or ``REDIS_URL``).
        client: a redis-py client on the same server (for the concurrency counters).
        limits: the configured limits.
    """

    def __init__(self, url: str, client: redis.Redis, limits: QuotaSettings):
        self.limits = limits
        self.r = client
        if url.startswith("unix://"):  # limits names redis-py's unix:// scheme redis+unix://
            url = "redis+unix://" + url.removeprefix("unix://")
        self.window = MovingWindowRateLimiter(RedisStorage(url, key_prefix="kvc:limits", wrap_exceptions=True))

    def _hit(self, item, owner: str, what: str) -> None:
        try:
            allowed = self.window.hit(item, owner, what)
            reset = allowed or self.window.get_window_stats(item, owner, what).reset_time
        except StorageError as exc:
            log.warning("rate limit not checked, Redis unreachable: %s", exc)
            return
        if not allowed:
            raise QuotaExceeded(f"You have reached the limit of {item.amount} {what} per {item.GRANULARITY.name}; "
                                f"try again in {_wait(reset - time.time())}.")

    def question(self, owner: str) -> None:
        """Count one question.

        Raises:
            QuotaExceeded: over ``questions_per_minute``.
        """
        if self.limits.questions_per_minute:
            self._hit(RateLimitItemPerMinute(self.limits.questions_per_minute), owner, "questions")

    def upload(self, owner: str, size_bytes: int, stored_bytes: int, documents: int) -> None:
        """Check the quotas for one more upload, then count it.

        Args:
            owner: the user.
            size_bytes: the new file's size.
            stored_bytes: the user's stored files now, bytes.
            documents: the user's documents now.

        Raises:
            QuotaExceeded: over ``documents``, ``stored_bytes`` or ``uploads_per_day``.
        """
        q = self.limits
        if q.documents and documents >= q.documents:
            raise QuotaExceeded(f"You already keep {documents} documents, the most allowed; delete some to upload more.")
        if q.stored_bytes and stored_bytes + size_bytes > q.stored_bytes:
            raise QuotaExceeded(f"This upload would take your documents past {size_text(q.stored_bytes)} of "
                                "storage; delete some documents first.")
        if q.uploads_per_day:
            self._hit(RateLimitItemPerDay(q.uploads_per_day), owner, "uploads")

    @contextlib.contextmanager
    def turn(self, owner: str) -> Iterator[None]:
        """Hold one of the user's concurrent-turn slots while the body runs.

        Raises:
            QuotaExceeded: the user already has ``concurrent_turns`` answers streaming.
        """
        if not self.limits.concurrent_turns:
            yield
            return
        key = f"kvc:{owner}:active_turns"
        try:
            active = self.r.incr(key)
            self.r.expire(key, TURN_TTL_S)
        except redis.RedisError as exc:
            log.warning("concurrent turns not counted, Redis unreachable: %s", exc)
            yield
            return
        try:
            if active > self.limits.concurrent_turns:
                raise QuotaExceeded(f"You already have {active - 1} answers in progress, the most allowed at once; "
                                    "wait for one to finish or stop it.")
            yield
        finally:
            with contextlib.suppress(redis.RedisError):
                self.r.decr(key)
