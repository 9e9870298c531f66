"""Prefetch: while the user types, get a selected prefix (or a session's snapshot) into a free
sequence before the question arrives, so pressing Enter evaluates only the question.

A prefetch is a batch-scheduler job that generates nothing: it restores what a tier has and
evaluates the rest in chunks beside the answers being written. It runs only if a sequence is
free at once (``busy`` otherwise); a newer prefetch supersedes an older one. A question for the
same session waits for it (``wait_for``) and then finds its prefix live in that sequence; a
question for another session preempts it (``preempt``): a prefill stops at the next step and
saves nothing. A question that finds every sequence busy also takes one from a running prefetch that is not of its
own prefix (the scheduler's ``_admit``), so it never waits behind work done for a question that may not come.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from backend.inference import Job, Scheduler
from backend.kvcache.prefix import PrefixMiss, PrefixResult

log = logging.getLogger(__name__)

# Gets the sequence, under the engine lock: restores what it can, says what is left to prefill.
Restore = Callable[[int], PrefixResult | PrefixMiss]


@dataclass
class PrefetchJob:
    """One prefetch.

    Attributes:
        session_id: the session it prepares.
        outcome: ``""`` while pending, then ``done``, ``preempted``, ``busy`` (no free sequence),
            or ``failed``.
        result: how the prefix got into the sequence, when ``done``.
        started: set once the job holds a sequence and begins its work.
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
    """Runs one prefetch at a time as a job of the batch scheduler.

    Args:
        scheduler: the engine's batch scheduler.
    """

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self._job: PrefetchJob | None = None
        self._guard = threading.Lock()

    def start(self, session_id: str, owner: str, tokens: list[int], restore: Restore) -> PrefetchJob:
        """Start a prefetch, superseding (cancelling) the previous one.

        Args:
            session_id: the session it prepares.
            owner: the user.
            tokens: what the sequence should hold afterwards (a prefix, or a snapshot's tokens).
            restore: called with the sequence id once it has one (see ``Restore``).

        Returns:
            The job (already submitted).
        """
        job = PrefetchJob(session_id)
        with self._guard:
            previous, self._job = self._job, job
        if previous is not None:
            previous.cancel.set()

        found: list[PrefixResult | PrefixMiss] = []

        def prepare(seq: int) -> dict:
            job.started.set()
            found.append(restore(seq))
            return found[0].milestones() if isinstance(found[0], PrefixMiss) else {}

        submitted = Job(owner, list(tokens), None, prepare, only_if_free=True, cancel=job.cancel)
        threading.Thread(target=self._watch, args=(job, submitted, found), name="prefetch", daemon=True).start()
        return job

    def _watch(self, job: PrefetchJob, submitted: Job, found: list) -> None:
        """Submit the scheduler job, wait for it, and record how it ended."""
        try:
            self.scheduler.submit(submitted)
            for kind, payload in iter(submitted.events.get, None):
                if kind == "error":
                    raise payload
                if kind in ("busy", "end"):
                    break
            got = found[0] if found else None
            job.result = got.result if isinstance(got, PrefixMiss) else got
            job.outcome = "busy" if kind == "busy" else "done" if job.result is not None else "preempted"
        except Exception as exc:  # noqa: BLE001 (a failed prefetch costs nothing; the question does the work)
            log.warning("prefetch failed: %s", exc)
            job.outcome = "failed"
        finally:
            job.finished.set()
        log.info("prefetch for session %s: %s", job.session_id, job.outcome)

    def preempt(self, session_id: str) -> None:
        """A question for ``session_id`` is about to run: cancel a prefetch for any other session."""
        with self._guard:
            job = self._job
        if job is not None and job.session_id != session_id:
            job.cancel.set()

    def wait_for(self, session_id: str, timeout_s: float | None = None) -> None:
        """A question for ``session_id`` is about to run: let a prefetch for that session finish
        first, so the question finds its prefix live instead of prefilling it a second time."""
        with self._guard:
            job = self._job
        if job is not None and job.session_id == session_id:
            job.wait(timeout_s)
