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


LONG = [10 + i % 1000 for i in range(7000)]  # a prefetch's prompt: 14 prefill steps of n_batch 512


def prefetch(tokens: list[int], owner: str = "local") -> Job:
    """A job as ``backend.kvcache.prefetch`` submits it: evaluate only, and only into a free sequence."""
    return Job(owner, list(tokens), None, only_if_free=True)


def held_while_prefilling(engine: Engine, scheduler: Scheduler, job: Job):
    """Submit ``job`` and return with the engine lock held (between two steps) while it is still prefilling; the
    caller releases it. Retries with a new job if the tiny model finished the prompt before the lock was taken."""
    for _ in range(20):
        scheduler.submit(job)
        while not scheduler.active and job.events.empty():
            time.sleep(0.0005)
        engine.lock.acquire()
        running = list(scheduler._running.values())
        if running and running[0].job is job and running[0].run.prefilling:
            return job
        engine.lock.release()
        list(job.stream())
        job = prefetch(job.tokens, job.owner)
    raise AssertionError("the prefetch never stayed in its prefill long enough to be caught")


def test_a_question_and_a_prefetch_arriving_together_give_the_question_the_sequence(tiny_model):
    with running(tiny_model, 1) as (engine, scheduler, prompt):
        with engine.lock:
            speculative = scheduler.submit(prefetch(LONG))
            question = scheduler.submit(Job("local", prompt, Sampling(max_tokens=8, temperature=0.0)))
        told: list[int] = []
        "".join(question.stream(on_queued=told.append))
        assert told == [] and question.stats.completion_tokens == 8
        assert speculative.events.get(timeout=10) == ("busy", None), "the prefetch gives way, it does not wait"


def test_a_running_prefetch_yields_its_sequence_to_a_question_but_not_its_own_prefix(tiny_model):
    with running(tiny_model, 1) as (engine, scheduler, prompt):
        speculative = held_while_prefilling(engine, scheduler, prefetch(LONG, owner="someone else"))
        try:
            question = scheduler.submit(Job("local", prompt, Sampling(max_tokens=8, temperature=0.0)))
        finally:
            engine.lock.release()
        told: list[int] = []
        "".join(question.stream(on_queued=told.append))
        assert told == [] and question.stats.completion_tokens == 8, f"waited behind a prefetch: {told}"
        assert list(speculative.stream()) == [] and speculative.cancel.is_set()

        own = held_while_prefilling(engine, scheduler, prefetch(LONG))  # the question's own prefix: it waits for it
        try:
            follow_up = scheduler.submit(Job("local", LONG + prompt, Sampling(max_tokens=8, temperature=0.0)))
        finally:
            engine.lock.release()
        "".join(follow_up.stream(on_queued=told.append))
        assert told == [1] and not own.cancel.is_set()
        assert follow_up.stats.reused_tokens == len(LONG), "it found the prefetched prefix in the sequence"
