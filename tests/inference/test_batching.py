"""The batch scheduler's admission, on the tiny synthetic model: a sequence whose job was cancelled is free
for the next job in the same step, so nobody is told to wait for a job that is already over."""

from __future__ import annotations

import time

from backend.inference import Engine, Job, LoadParams, Sampling, Scheduler

ENDLESS = Sampling(max_tokens=4000, temperature=0.0, ignore_eos=True)


def test_a_job_cancelled_as_another_arrives_hands_over_its_sequence_without_a_queue(tiny_model):
    engine = Engine()
    engine.load(tiny_model, LoadParams(n_ctx=8192, n_seq_max=1))
    scheduler = Scheduler(engine)
    try:
        prompt = engine.tokenize(engine.render([{"role": "user", "content": "Hello there"}]))
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
    finally:
        scheduler.close()
        engine.unload()

