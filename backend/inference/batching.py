"""Continuous batching: every running answer (and every priming or prefetch) holds one llama.cpp
sequence, and one decode step evaluates the next token of all of them in a single batch.

This is what llama-server does with ``--parallel N``: on a CPU, decode of a small model is bound
by reading the weights, so one step for four sequences costs little more than one for a single
sequence. New jobs join between steps; a new prompt is evaluated in chunks of
``prefill_chunk_tokens`` while others decode, so a long prefill does not freeze everyone's stream
(llama-server's chunked prefill, vLLM's ``max_num_batched_tokens``). When every sequence is busy,
jobs wait in first-come order and are told their place.

One thread runs the steps; it takes ``Engine.lock`` for one step at a time, so a model load
waits for the step in progress, and the jobs then running end with a clear error.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from backend.inference.engine import Engine
from backend.inference.sequence import SeqRun, TokenText
from backend.inference.types import EngineError, Sampling, StreamStats, common_prefix_len

log = logging.getLogger(__name__)

# Prompt tokens a step evaluates while other sequences are decoding: on two CPU cores a chunk of
# 128 costs the Qwen3-0.6B-shaped bench model about 1 s (benchmarks/ttft.py), so a stream pauses
# at most that long for someone else's prefill. With nobody decoding, prefill takes ``n_batch``.
PREFILL_CHUNK_TOKENS = 128

# Share of a prompt a free sequence must already hold to be chosen for it over the least recently
# used one (llama-server's default --slot-prompt-similarity is 0.5).
REUSE_SHARE = 0.5

Prepare = Callable[[int], dict[int, Callable[[], None]]]


class ModelChanged(EngineError):
    """The model was loaded, restarted or unloaded while a job held a sequence."""

    def __init__(self):
        super().__init__("The model was reloaded or unloaded while this answer was being written; "
                         "send the question again.")


@dataclass(eq=False)
class Job:
    """One request for a sequence.

    Attributes:
        owner: the user (a sequence holding another user's tokens is emptied first).
        tokens: the prompt the sequence must hold before generating, token ids.
        sampling: the answer's settings; None evaluates ``tokens`` only (priming, prefetch).
        prepare: called in the scheduler's thread, under the engine lock, once the job has its
            sequence (argument: the sequence id) and before its prompt is evaluated: restores a
            cached state into the sequence; returns ``SeqRun`` milestones (e.g. save the prefix).
        finish: called like ``prepare`` after the job ends without error (e.g. snapshot the
            sequence), also when cancelled.
        only_if_free: give up (``events`` gets ``busy``) instead of waiting when no sequence is free.
        media: images among ``tokens``, ``{start: span}`` (``backend.inference.vision``), evaluated in the
            job's own sequence between batch steps.
        probe: with ``sampling`` None, token-id groups whose log-probabilities after the prompt the job reads
            into ``stats.probe`` (e.g. how likely "yes" is), generating nothing.
        stats: filled in while it runs (``StreamStats``).
        events: what the job's reader gets, in order: ``("queued", place)`` while waiting (1 =
            next), ``("token", text)`` pieces, then ``("end", None)``,
            ``("busy", None)`` or ``("error", exception)``.
        cancel: set it to stop the job at the next step (its text so far stays valid).
    """

    owner: str
    tokens: list[int]
    sampling: Sampling | None = None
    prepare: Prepare | None = None
    finish: Callable[[int], None] | None = None
    only_if_free: bool = False
    media: dict = field(default_factory=dict)
    probe: list[list[int]] | None = None
    stats: StreamStats = field(default_factory=StreamStats)
    events: queue.Queue = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    place: int = 0  # place in the queue last told (0: not waiting)
    first_place: int = 0  # place when it first had to wait (0: it never waited)

    def stream(self, on_queued: Callable[[int], None] | None = None) -> Iterator[str]:
        """The answer's text pieces as they come, until the job ends.

        Args:
            on_queued: called with the job's place in line (1 = next) each time it changes.

        Raises:
            the job's error (``EngineError``, or whatever ``prepare`` raised).
        """
        for kind, payload in iter(self.events.get, None):
            if kind == "token":
                yield payload
            elif kind == "queued" and on_queued is not None:
                on_queued(payload)
            elif kind == "error":
                raise payload
            elif kind in ("end", "busy"):
                return


@dataclass
class _Running:
    job: Job
    run: SeqRun
    text: TokenText


class Scheduler:
    """Runs jobs on the engine's sequences, batching their decode steps.

    Args:
        engine: the engine; its ``n_seq_max`` sequences are the slots.
        prefill_chunk_tokens: prompt tokens per step while others decode (``PREFILL_CHUNK_TOKENS``).
    """

    def __init__(self, engine: Engine, prefill_chunk_tokens: int = PREFILL_CHUNK_TOKENS):
        self.engine, self.prefill_chunk_tokens = engine, prefill_chunk_tokens
        self._waiting: deque[Job] = deque()
        self._running: dict[int, _Running] = {}
        self._last_used: dict[int, int] = {}  # seq -> step it last ended a job (least recently used first)
        self._steps = itertools.count()
        self._llm = None  # the Llama the running jobs started on
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # public ------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        """Queue a job; the scheduler's thread starts it as soon as a sequence is free.

        Returns:
            The job (read it with ``Job.stream`` or its ``events``).
        """
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
                self._thread.start()
            self._waiting.append(job)
            self._cond.notify_all()
        return job

    @property
    def active(self) -> int:
        """Jobs holding a sequence now."""
        return len(self._running)

    def close(self) -> None:
        """Stop the thread after the current step; running and waiting jobs get an error."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._running:
                    self._cond.wait()
                if self._closed:
                    self._fail_all(EngineError("The app is shutting down."))
                    return
            try:
                self._step()
            except Exception as exc:  # a failed step ends the jobs in it, never the scheduler
                log.exception("batch step failed")
                with self.engine.lock:
                    self._fail_running(exc if isinstance(exc, EngineError) else EngineError(str(exc)))

    def _step(self) -> None:
        """End cancelled jobs, admit waiting ones, evaluate one batch, hand out the tokens, end finished jobs."""
        engine = self.engine
        while engine.lock.waiting:  # a model load (or another user of the lock) goes first
            time.sleep(0.001)
        with engine.lock:
            if self._running and engine.llm is not self._llm:
                self._fail_running(ModelChanged())
            for seq, r in list(self._running.items()):  # first: a cancelled job's sequence is free for a newcomer
                if r.job.cancel.is_set() or r.run.done:
                    self._end(seq)
            self._admit()
            work = self._batch()
            if not work:
                return
            outputs = engine.decode(work)
            for seq, tokens, _ in work:
                r = self._running[seq]
                try:
                    token = r.run.evaluated(len(tokens), outputs.get(seq))
                except Exception as exc:  # noqa: BLE001 (a milestone, saving a prefix, failed: this job only)
                    self._fail(seq, exc)
                    continue
                piece = r.text.feed(token) if token is not None else ""
                if piece:
                    r.job.events.put(("token", piece))
                if r.run.done:
                    self._end(seq)

    def _batch(self) -> list[tuple[int, list[int], bool]]:
        """This step's work: one token for each decoding sequence, then prompt chunks for the
        others in the order they came, within ``n_batch`` tokens."""
        engine, work = self.engine, []
        decoding = [seq for seq, r in self._running.items() if not r.run.prefilling]
        for seq in decoding:
            work.append((seq, self._running[seq].run.take(1), True))
        room = engine.n_batch - len(decoding)
        if decoding:
            room = min(room, self.prefill_chunk_tokens)
        for seq, r in self._running.items():
            if r.run.prefilling and room > 0:
                chunk = r.run.take(room)
                room -= len(chunk)
                work.append((seq, chunk, r.run.wants_logits))
        return [w for w in work if w[1]]

    # admission and ending ----------------------------------------------------------------
    def _admit(self) -> None:
        """Give free sequences to waiting jobs, first come first served, those that would wait (answers, priming)
        before those that would not (``only_if_free``: prefetches, speculative work). A job that would wait and finds
        no free sequence takes one from a running prefetch instead (``_yielding``), so a question never waits behind
        work done for a question that may not come."""
        engine = self.engine
        if not engine.loaded:
            with self._cond:
                waiting, self._waiting = list(self._waiting), deque()
            for job in waiting:
                job.events.put(("error", EngineError("No model is loaded; open the Model panel to load one.")))
            return
        if not self._running:
            self._llm = engine.llm
        with self._cond:
            jobs = sorted(self._waiting, key=lambda j: j.only_if_free)  # stable: first come first served within each
        for job in jobs:
            if job.cancel.is_set():
                self._drop_waiting(job, ("end", None))
                continue
            free = [s for s in range(engine.n_seq_max) if s not in self._running]
            if not free:
                if job.only_if_free:
                    self._drop_waiting(job, ("busy", None))
                    continue
                yielding = self._yielding(job)
                if yielding is None:
                    break
                self._running[yielding].job.cancel.set()
                self._end(yielding)
                free = [yielding]
            self._drop_waiting(job, None)
            self._start(job, self._pick(free, job))
        with self._cond:
            self._tell_places()

    def _yielding(self, job: Job) -> int | None:
        """A sequence a running prefetch (``only_if_free``) holds and can give up to ``job``: one of another user, or
        one whose prompt is not the start of ``job``'s (a prefetch of the job's own prefix is left to finish: the job
        then reuses it). None when there is none."""
        for seq, r in self._running.items():
            own = r.job.owner == job.owner and job.tokens[: len(r.job.tokens)] == r.job.tokens
            if r.job.only_if_free and not own:
                return seq
        return None

    def _pick(self, free: list[int], job: Job) -> int:
        """The free sequence to use: the one holding the longest prefix of the job's prompt for the
        same user, when that covers at least ``REUSE_SHARE`` of it (its KV entries are reused);
        else the least recently used, so a short shared header does not evict another session's
        context (llama-server's ``--slot-prompt-similarity``)."""
        engine = self.engine

        def shared(seq: int) -> int:
            same = engine.seq_owners[seq] == job.owner
            return common_prefix_len(engine.context_tokens(seq), job.tokens) if same else 0

        best = max(free, key=shared)
        if shared(best) >= REUSE_SHARE * len(job.tokens) > 0:
            return best
        return min(free, key=lambda seq: self._last_used.get(seq, -1))

    def _start(self, job: Job, seq: int) -> None:
        engine = self.engine
        try:
            engine.claim(seq, job.owner)
            milestones = job.prepare(seq) if job.prepare else {}
            run = SeqRun(engine, seq, job.tokens, job.sampling, job.stats, milestones, job.media, job.probe)
        except Exception as exc:  # noqa: BLE001 (whatever prepare raised goes to this job's reader, not the loop)
            job.events.put(("error", exc))
            return
        self._running[seq] = _Running(job, run, TokenText(engine))

    def _end(self, seq: int) -> None:
        """End the job on ``seq`` normally (done or cancelled): flush its text, run ``finish``."""
        r = self._running.pop(seq)
        r.run.close()
        self._last_used[seq] = next(self._steps)
        tail = r.text.flush()
        if tail:
            r.job.events.put(("token", tail))
        try:
            if r.job.finish:
                r.job.finish(seq)
        except Exception as exc:  # noqa: BLE001 (the answer stands; only what finish keeps is lost)
            log.warning("finishing a job on sequence %d failed: %s", seq, exc)
        r.job.events.put(("end", None))

    def _fail(self, seq: int, exc: Exception) -> None:
        r = self._running.pop(seq)
        r.run.close()
        if self.engine.llm is self._llm:  # what the sequence holds is no longer known to be whole
            self.engine.clear_context(seq)
        r.job.events.put(("error", exc))

    def _fail_running(self, exc: Exception) -> None:
        for seq in list(self._running):
            r = self._running.pop(seq)
            r.run.close()
            r.job.events.put(("error", exc))
        self._last_used.clear()

    def _fail_all(self, exc: Exception) -> None:
        with self.engine.lock:
            self._fail_running(exc)
        waiting, self._waiting = list(self._waiting), deque()
        for job in waiting:
            job.events.put(("error", exc))

    def _drop_waiting(self, job: Job, event: tuple | None) -> None:
        with self._cond:
            self._waiting.remove(job)
        if event is not None:
            job.events.put(event)

    def _tell_places(self) -> None:
        """Tell each job still waiting after admission its place (1 = next). Caller holds ``_cond``."""
        for place, job in enumerate(self._waiting, 1):
            if job.place != place:
                job.place, job.first_place = place, job.first_place or place
                job.events.put(("queued", place))
