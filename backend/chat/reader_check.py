"""The reader asked whether a cited passage answers the question: the answering model's next-token probability of
"yes" against "no" (``verdict.Signals.reader_yes``), a signal of the answer's verdict that was never trained for it
but reads the question against the passage as no word count can.

Why this one: on 200 held-out (question, paragraph) pairs of the SQuAD 2.0 tuning articles, Qwen2.5-Coder-0.5B's
P(yes), asked this way, told answerable from adversarial unanswerable questions at ROC AUC 0.857, against 0.585 for
MiniLM's cosine and 0.518 for a MiniLM cross-encoder fine-tuned on the other articles' 2,299 pairs
(``benchmarks/verifier.py``, docs/benchmarks.md "An answerability verifier"). On the top source sentences of Qwen's
own 368 judged calibration answers it told right answers from the rest at AUC 0.73 (MiniLM's cosine: 0.64), and the
calibration gives it Qwen's largest weight. SmolLM2-135M's P(yes) is at chance (0.49).

It runs as a job of the batch scheduler after the answer has streamed (never before its first token): one prompt of
about a hundred tokens, no token generated, the last position's logits read (``Job.probe``). It takes the least
recently used free sequence, like any job.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time

from backend.inference import Engine, EngineError, Job, Scheduler

log = logging.getLogger(__name__)

SYSTEM = "Answer yes or no."
QUESTION = "Passage: {passage}\n\nQuestion: {question}\n\nDoes the passage answer the question?"
WORDS = ("yes", "no")  # each also capitalized: the first token of either spelling counts
MAX_PASSAGE_CHARS = 1500  # a cited passage is a sentence or three; a longer one is cut
TIMEOUT_S = 20.0  # longest wait for a sequence and the prompt's evaluation; then the verdict goes on without it


class ReaderCheck:
    """Asks the loaded model whether a passage answers a question.

    Args:
        engine: the engine whose loaded model answers (None from ``__call__`` when none is loaded).
        scheduler: its batch scheduler.
        timeout_s: how long to wait for the answer, seconds (``TIMEOUT_S``).
    """

    def __init__(self, engine: Engine, scheduler: Scheduler, timeout_s: float = TIMEOUT_S):
        self.engine, self.scheduler, self.timeout_s = engine, scheduler, timeout_s
        self._groups: tuple[object, list[list[int]]] | None = None  # (the Llama they belong to, token groups)
        self._lock = threading.Lock()

    def __call__(self, owner: str, question: str, passage: str) -> float | None:
        """P(yes) / (P(yes) + P(no)) of the model's first answer token to ``QUESTION`` (0..1), or None when it could
        not be asked (no local model, the model changed, the wait ran past ``timeout_s``).

        Args:
            owner: the user whose document the passage is (the sequence it runs in is theirs meanwhile).
            question: the question as typed.
            passage: the cited passage (cut to ``MAX_PASSAGE_CHARS`` characters).
        """
        try:
            groups = self._token_groups()
            if groups is None:
                return None
            prompt = self.engine.render([{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION.format(
                passage=passage[:MAX_PASSAGE_CHARS], question=question)}])
            job = Job(owner, self.engine.tokenize(prompt), None, probe=groups)
        except EngineError as exc:
            log.info("reader check not asked: %s", exc)
            return None
        self.scheduler.submit(job)
        for kind, payload in _events(job, self.timeout_s):
            if kind == "error":
                log.info("reader check failed: %s", payload)
                return None
            if kind == "end" and len(job.stats.probe) == 2:
                yes, no = job.stats.probe
                return 1.0 / (1.0 + math.exp(max(-60.0, min(60.0, no - yes))))
        job.cancel.set()
        log.info("reader check gave up after %.0f s", self.timeout_s)
        return None

    def _token_groups(self) -> list[list[int]] | None:
        """The first token of "yes"/"Yes" and of "no"/"No" for the loaded model (None without one)."""
        llm = self.engine.llm
        if llm is None:
            return None
        with self._lock:
            if self._groups is None or self._groups[0] is not llm:
                groups = [sorted({self.engine.tokenize(v)[0] for v in (w, w.capitalize())}) for w in WORDS]
                self._groups = (llm, groups)
            return self._groups[1]


def _events(job: Job, timeout_s: float):
    """The job's events until it ends, or until ``timeout_s`` seconds have passed in all."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            kind, payload = job.events.get(timeout=left)
        except queue.Empty:
            return
        yield kind, payload
        if kind in ("end", "error", "busy"):
            return
