"""Clean-up that makes "deleted" mean gone from the disk, on a schedule with a stated bound.

Deleting a document or a chat removes it from every listing at once, but copies of its bytes can linger where
the stores keep history: LanceDB keeps every table version a write makes (the deleted rows stay in older data
files), and Redis's append-only file keeps every command ever applied until it is rewritten. ``Upkeep`` runs the
tasks that drop those (each package supplies its own: ``Store.purge``, ``rewrite_redis_files``) in one
background thread:

* ``delay_s`` after the first delete since the last run (``poke``), so a deleted document's bytes are gone from
  the disk within ``delay_s`` plus the run's own time;
* every ``interval_s`` in any case (compaction keeps the index from growing with every write).

A task that fails is logged and tried again on the next run; the others still run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)


class Upkeep:
    """A background thread running named clean-up tasks after deletes and on an interval.

    Args:
        tasks: ``(name, callable)`` pairs, run in order; each returns anything (logged) or raises.
        delay_s: seconds from the first ``poke`` after a run to the next run.
        interval_s: seconds between runs when nothing pokes (0 or less: only after pokes).
    """

    def __init__(self, tasks: list[tuple[str, Callable[[], object]]], delay_s: float, interval_s: float):
        self.tasks, self.delay_s, self.interval_s = list(tasks), max(0.0, delay_s), interval_s
        self._wake = threading.Condition()
        self._due: float | None = None  # monotonic time of the run a poke asked for
        self._closed = False
        self.runs = 0
        self.last: dict[str, str] = {}  # task -> "ok ..." or "failed: why", of the last run
        self._thread = threading.Thread(target=self._loop, name="upkeep", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Something was deleted: run within ``delay_s`` (an earlier pending run stays as it is)."""
        with self._wake:
            due = time.monotonic() + self.delay_s
            self._due = due if self._due is None else min(self._due, due)
            self._wake.notify()

    def run_now(self) -> dict[str, str]:
        """Run every task now, in this thread; returns ``last``."""
        for name, task in self.tasks:
            started = time.perf_counter()
            try:
                result = task()
                self.last[name] = f"ok in {time.perf_counter() - started:.2f} s" + (f": {result}" if result else "")
            except Exception as exc:  # noqa: BLE001 (a failed task is retried next run; the others go on)
                self.last[name] = f"failed: {exc}"
                log.warning("upkeep: %s failed: %s", name, exc)
        self.runs += 1
        log.info("upkeep run %d: %s", self.runs, "; ".join(f"{k} {v}" for k, v in self.last.items()))
        return dict(self.last)

    def _loop(self) -> None:
        next_periodic = time.monotonic() + self.interval_s if self.interval_s > 0 else None
        while True:
            with self._wake:
                while not self._closed:
                    now = time.monotonic()
                    due = min(t for t in (self._due, next_periodic, float("inf")) if t is not None)
                    if due <= now:
                        break
                    self._wake.wait(None if due == float("inf") else due - now)
                if self._closed:
                    return
                self._due = None
            self.run_now()
            if self.interval_s > 0:
                next_periodic = time.monotonic() + self.interval_s

    def close(self) -> None:
        """Stop the thread (a run in progress finishes first)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=60)


def rewrite_redis_files(client: redis.Redis) -> str:
    """Have Redis rewrite its persistence files from the live dataset only: ``BGREWRITEAOF`` (the append-only
    file, which otherwise keeps every command since the last rewrite, deleted keys' values among them), then
    ``BGSAVE`` (the RDB snapshot) once that is done. Waits for both, at most 60 s each.

    Returns:
        What was done, for the log.

    Raises:
        redis.RedisError: Redis refused or is unreachable.
        TimeoutError: a rewrite did not finish within 60 s.
    """
    client.bgrewriteaof()
    _wait(client, "aof_rewrite_in_progress", "aof_rewrite_scheduled")
    client.bgsave(schedule=True)
    _wait(client, "rdb_bgsave_in_progress")
    return "append-only file and snapshot rewritten"


def _wait(client: redis.Redis, *flags: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.info("persistence")
        if not any(int(info.get(f, 0)) for f in flags):
            return
        time.sleep(0.05)
    raise TimeoutError(f"Redis did not finish ({', '.join(flags)}) within {timeout_s:.0f} s")
