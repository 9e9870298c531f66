"""One chat turn: plan (``prepare``) -> restore/prime -> stream -> persist -> metrics.

``ChatService.stream_turn`` yields ``TurnEvent`` values; the UI and the API map them to
their own formats and never touch llama.cpp, Redis or LanceDB themselves.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from backend.chat.images import (
    ImageTurn,
    image_turn,
)
from backend.chat.memory import MemoryIndex
from backend.chat.metrics import turn_metrics
from backend.chat.planner import ChatError, Planner
from backend.chat.prepare import Preparation
from backend.chat.sessions import SessionStore
from backend.chat.thinking import ThinkSplitter
from backend.chat.turns import Turn, TurnEvent, TurnJob, grounding_fields
from backend.config import Settings
from backend.documents import DocumentError, DocumentService
from backend.grounding import Attribution, Grounder
from backend.inference import Engine, Job, RemoteEngine, ReplicaError, Sampling, StreamStats
from backend.kvcache import (
    KVCacheStore,
    Prefetcher,
    PrefixMiss,
    PrefixResult,
    ReplicaCaches,
    SessionSnapshots,
    fingerprint,
    restore_prefix,
)

log = logging.getLogger(__name__)


class ChatService(Preparation):
    """Runs chat turns (``prepare_turn``, from ``Preparation``, plans one; ``run_turn`` streams it).

    Args:
        settings: app settings (budgets, sampling defaults, system prompt).
        engine / kv_store / sessions / documents: the long-lived services.
        snapshots: each session's context after its last answer (restored, then retaken, per turn).
        prefetcher: the prefetch a turn preempts when it comes from another session (``Primer``); its
            batch scheduler runs the turns.
        grounder: finds the passages that support each answer, and its verdict.
        remote: an OpenAI-compatible server that answers instead of ``engine`` (None: local).
        memory: long-term memory; every question is indexed in it (None: off).
        replicas: llama-server replicas that answer instead of ``engine``, which then holds only the model's
            vocabulary (``Engine.load_vocab``): prompts are laid out and tokenized here, as locally.
    """

    def __init__(self, settings: Settings, engine: Engine, kv_store: KVCacheStore, sessions: SessionStore,
                 documents: DocumentService, snapshots: SessionSnapshots, prefetcher: Prefetcher,
                 grounder: Grounder, remote: RemoteEngine | None = None, memory: MemoryIndex | None = None,
                 replicas: ReplicaCaches | None = None):
        self.settings, self.memory, self.grounder, self.replicas = settings, memory, grounder, replicas
        self.scheduler = prefetcher.scheduler
        self.engine, self.kv_store, self.sessions = engine, kv_store, sessions
        self.documents, self.remote = documents, remote
        self.planner = Planner(settings, documents, engine, remote)
        self.snapshots, self.prefetcher = snapshots, prefetcher
        self._turns: Counter[str] = Counter()  # session id -> its turns running or waiting for a sequence
        self._stops: set[threading.Event] = set()  # the stop flags of those turns (``drain`` sets them)
        self._turns_lock = threading.Lock()
        self._closing = False  # ``drain`` began: new turns are refused
        self.clock: Callable[[], float] = time.time  # the date line's time (``turn_datetime``), seconds since the epoch

    @property
    def queued_turns(self) -> int:
        """Chat turns now running or waiting for a sequence."""
        return sum(self._turns.values())

    def running(self, session_id: str) -> bool:
        """True while a turn of this session is running or waiting (its answer is not saved yet)."""
        return self._turns[session_id] > 0

    def _count_turn(self, session_id: str, stop: threading.Event, delta: int) -> None:
        with self._turns_lock:
            self._turns[session_id] += delta
            if self._turns[session_id] <= 0:
                del self._turns[session_id]
            (self._stops.add if delta > 0 else self._stops.discard)(stop)

    def drain(self, grace_s: float, settle_s: float = 10.0) -> int:
        """Shut turns down for a clean stop: refuse new ones, let running answers finish for up to
        ``grace_s`` seconds, then stop the rest, which are saved as stopped (partial) answers.

        Args:
            grace_s: how long running answers may go on, seconds.
            settle_s: how long stopped answers get to be saved, seconds.

        Returns:
            How many answers were stopped.
        """
        self._closing = True
        deadline = time.monotonic() + grace_s
        while self.queued_turns and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._turns_lock:
            stops = list(self._stops)
        for stop in stops:
            stop.set()
        deadline = time.monotonic() + settle_s
        while self.queued_turns and time.monotonic() < deadline:
            time.sleep(0.05)
        if stops:
            log.info("shutting down: %d answers stopped and saved as partial", len(stops))
        return len(stops)

    # turns -------------------------------------------------------------------------------
    def run_turn(self, turn: Turn) -> Iterator[TurnEvent]:
        """Restore or prime the prefix, stream the answer, persist it with its metrics.

        Locally the turn is a job of the batch scheduler (``backend.inference.batching``): it gets
        a sequence of its own and decodes in the same batch as the other answers being written.
        A worker thread relays the job's text and persists the answer; this generator only drains
        its queue, so no lock is held across a ``yield`` (Gradio resumes generators on whichever
        worker thread is free), and closing the generator early stops this answer (only this one)
        at the next step, keeping the partial answer.

        Yields:
            ``queued`` (``data["place"]``: its place in line while every sequence is busy, 1 = next),
            ``thinking`` (text inside ``<think>…</think>``) and ``token`` (answer text) events,
            then ``sources`` (the answer's sources and grounding verdict, found after its last token),
            ``metrics`` and ``done`` (its text is the answer without thinking).

        Raises:
            EngineError: llama.cpp failed (e.g. the model was unloaded meanwhile).
            SessionError: the answer could not be saved.
        """
        events: queue.Queue = queue.Queue()  # unbounded: the worker never waits for the reader
        stop = threading.Event()
        self.prefetcher.preempt(turn.session_id)
        worker = threading.Thread(target=self._generate, args=(turn, events, stop), name="chat-turn", daemon=True)
        worker.start()
        try:
            while True:
                kind, payload = events.get()
                if kind in ("answer", "thinking"):
                    yield TurnEvent("token" if kind == "answer" else "thinking", payload)
                elif kind == "queued":
                    yield TurnEvent("queued", data={"place": payload})
                elif kind == "error":
                    raise payload
                else:
                    answer, metrics, grounded = payload
                    break
        finally:
            stop.set()
        yield TurnEvent("sources", data=grounded)
        yield TurnEvent("metrics", data=metrics)
        yield TurnEvent("done", answer, data={"metrics": metrics, **grounded, "web_sources": turn.extra.web_sources})

    def _generate(self, turn: Turn, events: queue.Queue, stop: threading.Event) -> None:
        """Worker of ``run_turn``: submits the turn (locally to the batch scheduler, which snapshots the
        session's sequence after the answer), relays its text, and persists the answer."""
        plan, stats, engine = turn.plan, StreamStats(), self.engine
        self._count_turn(turn.session_id, stop, +1)
        try:
            if self.remote is not None:  # the server queues and caches on its own
                start = time.perf_counter()
                answer = self._relay(self.remote.stream(plan.prompt, turn.sampling, stats), events, stop)
                prefix = PrefixResult("remote", plan.prompt.n_prefix)
                self._finish(turn, prefix, stats, start, answer, events, stop.is_set(), self.remote.n_ctx)
                return
            if self.replicas is not None:
                self._on_replicas(turn, stats, events, stop)
                return
            self.prefetcher.wait_for(turn.session_id)
            start = time.perf_counter()
            job = self.scheduler.submit(self._job(turn, stats, stop))
            try:
                answer = self._relay(job, events, stop)
            finally:
                if job.vision is not None:
                    job.vision.close()
            got = job.prefix
            prefix = (got.result or PrefixResult("miss", len(got.tokens))) if isinstance(got, PrefixMiss) else got
            self._finish(turn, prefix or PrefixResult("miss", 0), stats, start, answer, events, stop.is_set(),
                         engine.n_ctx, job.queue_s, job.first_place)
        except Exception as exc:  # noqa: BLE001 (handed to the reader, which raises it in the request's thread)
            log.warning("chat turn failed: %s", exc)
            events.put(("error", exc))
        finally:
            self._count_turn(turn.session_id, stop, -1)

    def _on_replicas(self, turn: Turn, stats: StreamStats, events: queue.Queue, stop: threading.Event) -> None:
        """A turn answered by the prefix's llama-server replica (``ReplicaCaches.answer``). A replica that dies
        mid-answer leaves the answer so far, saved as cut short (``stop_reason`` ``replica lost``); the next
        question goes to another replica, which restores the same prefix from the slot directory."""
        plan, placed, lost = turn.plan, [], []

        def until_lost(pieces):
            try:
                yield from pieces
            except ReplicaError as exc:
                if stats.first_token_at is None:
                    raise  # nothing was said: the turn fails with the sentence, the question goes back
                log.warning("replica lost mid-answer: %s", exc)
                lost.append(exc)

        start = time.perf_counter()
        prompt = plan.prompt
        answer = self._relay(until_lost(self.replicas.answer(
            prompt.prefix_tokens, prompt.tokens, plan.prefix_doc_ids, turn.owner, plan.prefix_chunks, turn.sampling,
            stats, placed)), events, stop)
        got = placed[0] if placed else None
        prefix = (PrefixResult(got.tier, got.n_tokens, got.restore_s, got.prefill_s, got.state_bytes) if got
                  else PrefixResult("miss", len(prompt.prefix_tokens)))
        if lost:
            stats.stop_reason = "replica lost"
        self._finish(turn, prefix, stats, start, answer, events, stop.is_set(), self.engine.n_ctx,
                     replica=got.replica if got else None)

    def _job(self, turn: Turn, stats: StreamStats, stop: threading.Event) -> TurnJob:
        """The scheduler job of a local turn: its sequence gets the session's snapshot or the cached
        prefix (the rest of the prefix is evaluated in the batch, then saved), and is snapshotted
        after the answer."""
        engine, plan = self.engine, turn.plan
        prompt = plan.prompt
        pictures = None
        if turn.images:
            with engine.lock:  # libmtmd reads the model's vocabulary
                if engine.projector is None or engine.generation != turn.generation:
                    raise ChatError("The model was changed or unloaded while this question waited; send it again.")
                pictures = image_turn(engine.projector, prompt, list(turn.images),
                                      engine.n_ctx - turn.sampling.max_tokens)

        def prepare(seq: int) -> dict:
            if not engine.loaded or engine.generation != turn.generation:
                raise ChatError("The model was changed or unloaded while this question waited; send it again.")
            job.started_at = time.perf_counter()
            if pictures is not None:
                return self._prepare_images(job, turn, pictures, seq)
            job.prefix = (self.snapshots.restore(engine, turn.snapshot, prompt.prefix_tokens, prompt.tokens, seq)
                          or restore_prefix(engine, self.kv_store, prompt.prefix_tokens, plan.prefix_doc_ids,
                                            turn.owner, plan.prefix_chunks, seq))
            return job.prefix.milestones() if isinstance(job.prefix, PrefixMiss) else {}

        def finish(seq: int) -> None:
            if pictures is None:  # the next turn's history carries no image: nothing of this one to splice
                self.snapshots.take(engine, turn.owner, turn.session_id, prompt.tokens, prompt.text,
                                    fingerprint(engine), seq)

        job = TurnJob(turn.owner, pictures.tokens if pictures else prompt.tokens, turn.sampling, prepare, finish,
                      stats=stats, cancel=stop, media=pictures.media if pictures else {},
                      vision=pictures.vision if pictures else None)
        return job

    def _prepare_images(self, job: TurnJob, turn: Turn, pictures: ImageTurn, seq: int) -> dict:
        """``prepare`` of an image turn: restore the prefix up to the end of its images when any tier has it
        (no image is encoded again); else restore the documents' prefix as usual, and save the image prefix
        once the batch has evaluated it. Returns the ``SeqRun`` milestones."""
        plan = turn.plan
        got = restore_prefix(self.engine, self.kv_store, pictures.image_prefix, plan.prefix_doc_ids, turn.owner,
                             plan.prefix_chunks, seq)
        if isinstance(got, PrefixResult):
            job.prefix = got
            return {}
        job.prefix = restore_prefix(self.engine, self.kv_store, plan.prompt.prefix_tokens, plan.prefix_doc_ids,
                                    turn.owner, plan.prefix_chunks, seq)
        milestones = job.prefix.milestones() if isinstance(job.prefix, PrefixMiss) else {}
        milestones[len(pictures.image_prefix)] = lambda: got.save(False)
        return milestones

    @staticmethod
    def _relay(pieces: Iterator[str] | Job, events: queue.Queue, stop: threading.Event) -> str:
        """Split streamed pieces (a remote stream, or a scheduler job's) into thinking and answer text
        and pass both to the reader, with the job's place in line while it waits, until the end or
        a stop. A job is read to its end even after a stop (``stop`` is its cancel flag, so that end
        comes at the next step), so its statistics are final when this returns.

        Returns:
            The answer without its thinking (history and later prompts leave the thinking out).
        """
        splitter = ThinkSplitter()
        is_job = isinstance(pieces, Job)
        if is_job:
            pieces = pieces.stream(on_queued=lambda place: events.put(("queued", place)))
        with contextlib.closing(pieces):
            for piece in pieces:
                for part in splitter.feed(piece):
                    events.put(part)
                if stop.is_set() and not is_job:
                    break
        for part in splitter.close():
            events.put(part)
        return splitter.answer_text

    def _finish(self, turn: Turn, prefix: PrefixResult, stats: StreamStats, start: float, answer: str,
                events: queue.Queue, stopped: bool, n_ctx: int, queue_s: float = 0.0, queue_place: int = 0,
                replica: str | None = None) -> None:
        """Find the answer's sources, record the metrics (``replica``: the URL of the replica that answered),
        persist the answer and hand it to the reader."""
        metrics = turn_metrics(turn.plan, turn.sampling.max_tokens, n_ctx, prefix, stats, start, stopped=stopped,
                               queue_s=queue_s, queue_place=queue_place)
        if replica is not None:
            metrics["replica"] = replica
        attribution = self._attribute(turn, answer)
        metrics.update(web_results=len(turn.extra.web_sources), web_note=turn.extra.web_note,
                       memories=turn.extra.memories, grounding=attribution.grounding if attribution else None,
                       attribution_s=round(attribution.seconds, 4) if attribution else 0.0)
        grounded = grounding_fields(turn, attribution)
        self._persist(turn, answer, metrics, grounded)
        events.put(("end", (answer, metrics, grounded)))

    def _attribute(self, turn: Turn, answer: str) -> Attribution | None:
        """The answer's sources among the selected documents (None: no documents, or one vanished meanwhile)."""
        if not turn.plan.doc_ids:
            return None
        try:
            return self.grounder.attribute(turn.owner, turn.plan.doc_ids, turn.message, answer)
        except DocumentError as exc:
            log.info("no sources for an answer: %s", exc)
            return None

    def stream_turn(self, owner: str, session_id: str, message: str, doc_ids: list[str],
                    sampling: Sampling | None = None, mode: str = "auto",
                    thinking: bool | None = None, web: bool | None = None,
                    remember: bool | None = None, images: list | None = None) -> Iterator[TurnEvent]:
        """``prepare_turn`` then ``run_turn``, as one generator (errors surface on first ``next``)."""
        yield from self.run_turn(self.prepare_turn(owner, session_id, message, doc_ids, sampling, mode, thinking,
                                                   web, remember, images))

    def _persist(self, turn: Turn, answer: str, metrics: dict, grounded: dict) -> None:
        """Append the user message (as shown, and as sent) and the (possibly partial) answer, with its sources
        and verdict, to the session."""
        assistant = {"role": "assistant", "content": answer, "metrics": metrics, **grounded,
                     "web_sources": turn.extra.web_sources}
        if metrics["stop_reason"] in ("stopped", "replica lost"):
            assistant["stopped"] = True
        user = {"role": "user", "content": turn.message}
        if turn.extra.sent != turn.message:
            user["sent"] = turn.extra.sent
        if turn.image_files:
            user["images"] = list(turn.image_files)
        self.sessions.append(turn.owner, turn.session_id, user, assistant)
        if self.memory is not None:
            self.memory.add(turn.owner, turn.session_id, turn.message)

    def forget_session(self, owner: str, session_id: str) -> None:
        """Drop a deleted session's snapshot from the RAM tier and its messages from the memory index."""
        self.snapshots.drop(owner, session_id)
        if self.memory is not None:
            self.memory.delete_session(owner, session_id)
