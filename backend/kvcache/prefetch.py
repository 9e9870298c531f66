"""Prefetch: while the engine is idle, get a selected prefix (or a session's snapshot) into the
context before the question arrives, so pressing Enter evaluates only the question.

One job at a time, in its own thread. A job runs only if it can take ``engine.lock`` at once
(the engine is idle); a newer job supersedes an older one. A question for the same session
simply waits for the lock (it then finds its prefix live); a question for another session
preempts the job: a prefill stops at its next chunk (``PREEMPTIBLE_CHUNK_TOKENS``) and a
restore that has not started is skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.inference import Interrupted
from backend.kvcache.prefix import PrefixResult

log = logging.getLogger(__name__)

Work = Callable[[Callable[[], bool]], PrefixResult]  # gets should_stop; runs under engine.lock


@dataclass
class PrefetchJob:
    """One prefetch.

    Attributes:
        session_id: the session it prepares.
        outcome: ``""`` while pending, then ``done``, ``preempted``, ``busy`` (the engine was not
            idle), or ``failed``.
        result: how the prefix got into the context, when ``done``.
        started: set once the job holds the engine lock and begins its work.
    """

    session_id: str
    outcome: str = ""
    result: PrefixResult | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the job ends; True if it did within ``timeout_s`` seconds."""
        return self.finished.wait(timeout_s)


class Prefetcher:
    """Runs prefetch jobs against one engine lock.

    Args:
        lock: the engine's lock (``Engine.lock``).
    """

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self._job: PrefetchJob | None = None
        self._guard = threading.Lock()

    def start(self, session_id: str, work: Work) -> PrefetchJob:
        """Start a job in the background, superseding (cancelling) the previous one.

        Args:
            session_id: the session it prepares.
            work: called with ``should_stop`` while holding the engine lock.

        Returns:
            The job (already running).
        """
        job = PrefetchJob(session_id)
        with self._guard:
            previous, self._job = self._job, job
        if previous is not None:
            previous.cancel.set()
        threading.Thread(target=self._run, args=(job, previous, work), name="prefetch", daemon=True).start()
        return job

    def _run(self, job: PrefetchJob, previous: PrefetchJob | None, work: Work) -> None:
        try:
            if previous is not None:
                previous.wait()
            if job.cancel.is_set():
                job.outcome = "preempted"
            elif not self.lock.acquire(blocking=False):
                job.outcome = "busy"
            else:
                try:
                    job.started.set()
                    job.result, job.outcome = work(job.cancel.is_set), "done"
                except Interrupted:
                    job.outcome = "preempted"
                finally:
                    self.lock.release()
        except Exception as exc:  # a failed prefetch costs nothing; the question does the work
            log.warning("prefetch failed: %s", exc)
            job.outcome = "failed"
        finally:
            job.finished.set()
        log.info("prefetch for session %s: %s", job.session_id, job.outcome)

    def preempt(self, session_id: str) -> None:
        """A question for ``session_id`` is about to run: cancel a job for any other session."""
        with self._guard:
            job = self._job
        if job is not None and job.session_id != session_id:
            job.cancel.set()
