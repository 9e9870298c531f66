"""The batch scheduler on the tiny synthetic model: a sequence whose job was cancelled is free for the next job in
the same step, so nobody is told to wait for a job that is already over; a probe job reads token groups'
log-probabilities after its prompt and generates nothing."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator

from backend.inference import Engine, Job, LoadParams, Sampling, Scheduler

ENDLESS = Sampling(max_tokens=4000, temperature=0.0, ignore_eos=True)


@contextlib.contextmanager
def running(model, n_seq_max: int) -> Iterator[tuple[Engine, Scheduler, list[int]]]:
    """The model loaded with ``n_seq_max`` sequences, its scheduler, and a short chat prompt's tokens."""
    engine = Engine()
    engine.load(model, LoadParams(n_ctx=8192, n_seq_max=n_seq_max))
    scheduler = Scheduler(engine)
    try:
        yield engine, scheduler, engine.tokenize(engine.render([{"role": "user", "content": "Is it so?"}]))
    finally:
        scheduler.close()
        engine.unload()


def test_a_job_cancelled_as_another_arrives_hands_over_its_sequence_without_a_queue(tiny_model):
    with running(tiny_model, 1) as (engine, scheduler, prompt):
        first = scheduler.submit(Job("local", prompt, ENDLESS))
        assert first.events.get(timeout=60)[0] == "token"  # it holds the only sequence
        with engine.lock:  # between two steps: the first is cancelled as the second arrives (a prefetch preempted)
            first.cancel.set()
            second = scheduler.submit(Job("local", prompt, Sampling(max_tokens=8, temperature=0.0)))
        told: list[int] = []
        assert "".join(second.stream(on_queued=lambda place: told.append(place))) is not None
        assert second.stats.completion_tokens == 8
        assert told == [], f"told to wait behind a cancelled job: places {told}"
        assert second.place == second.first_place == 0
        deadline = time.monotonic() + 10
        while scheduler.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert scheduler.active == 0


def test_a_probe_job_reads_token_groups_log_probabilities_after_its_prompt(tiny_model):
    with running(tiny_model, 2) as (engine, scheduler, prompt):
        greedy = scheduler.submit(Job("local", prompt, Sampling(max_tokens=1, temperature=0.0)))
        text = "".join(greedy.stream())
        n_vocab = engine.llm.n_vocab()
        probe = scheduler.submit(Job("local", prompt, None, probe=[*([t] for t in range(n_vocab)), list(range(n_vocab))]))
        list(probe.stream())
        *singles, whole = probe.stats.probe
        assert len(singles) == n_vocab and abs(whole) < 1e-6, "the whole vocabulary holds all the probability"
        assert abs(math.log(sum(math.exp(s) for s in singles))) < 1e-6 and all(s <= 0 for s in singles)
        top = max(range(n_vocab), key=singles.__getitem__)
        assert engine.token_bytes(top).decode("utf-8", "replace") == text, "the likeliest token is the greedy answer"
        assert probe.stats.completion_tokens == 0, "a probe generates nothing"
