"""Chat turns as Gradio runs them: generators resumed on different threads, and closed early."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import TESTDATA, make_settings

from backend.inference import EngineError, Sampling
from backend.services import build_services


@pytest.fixture
def services(tmp_path, tiny_model, embedder):
    svc = build_services(make_settings(tmp_path / "data", tiny_model, max_tokens=64), embedder=embedder)
    yield svc
    if svc.engine.lock.acquire(timeout=5):  # a leaked lock fails the test above; don't hang here too
        svc.engine.lock.release()
        svc.close()
    else:
        svc.redis_server.stop()


class ThreadPerCall:
    """Runs each call on its own thread and keeps every thread alive until ``close`` (as a pool does),
    so no two calls share a thread identity."""

    def __init__(self):
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def next(self, gen) -> dict:
        box: dict = {}
        done = threading.Event()

        def run():
            try:
                box["value"] = next(gen)
            except StopIteration as stop:
                box["stop"] = stop
            except Exception as exc:  # noqa: BLE001 (surfaces in the test as a failure)
                box["error"] = exc
            done.set()
            self.release.wait(60)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        assert done.wait(30), "next() did not return"
        if "error" in box:
            raise box["error"]
        return box

    def close(self):
        self.release.set()
        for thread in self.threads:
            thread.join(5)


@pytest.mark.slow
def test_turn_resumed_on_different_threads_releases_the_lock(services):
    doc, _ = services.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    sid = services.sessions.create("local")
    gen = services.chat.stream_turn("local", sid, "Who are the crazy ones?", [doc.doc_id])
    kinds, pool = [], ThreadPerCall()
    try:
        while "stop" not in (box := pool.next(gen)):
            kinds.append(box["value"].kind)
    finally:
        pool.close()
    assert kinds.count("token") >= 2 and kinds[-1] == "done"
    assert services.engine.lock.acquire(timeout=5), "the engine lock must be free after the turn"
    services.engine.lock.release()
    services.engine.unload()  # used to hang here when the lock was held across yields


@pytest.mark.slow
def test_closing_a_turn_early_keeps_the_partial_answer_and_frees_the_engine(services):
    sid = services.sessions.create("local")
    gen = services.chat.stream_turn("local", sid, "Tell me a long story.", [])
    first = next(gen)
    assert first.kind == "token"
    gen.close()  # what Gradio does when the user stops or disconnects
    deadline = time.monotonic() + 10
    while (services.chat.scheduler.active or not services.sessions.get("local", sid).messages) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert services.chat.scheduler.active == 0, "the answer's sequence is given back"
    messages = services.sessions.get("local", sid).messages
    assert [m["role"] for m in messages] == ["user", "assistant"]
    answer = messages[1]
    assert answer["stopped"] is True and answer["metrics"]["stop_reason"] == "stopped"
    assert answer["content"].startswith(first.text)
    assert answer["metrics"]["completion_tokens"] < 64
    # and the next turn runs at once
    events = list(services.chat.stream_turn("local", sid, "Go on.", []))
    assert events[-1].kind == "done" and events[-1].data["metrics"]["history_messages"] == 2


@pytest.mark.slow
def test_a_model_restart_ends_the_answers_in_flight_with_a_clear_sentence(tmp_path, tiny_model, embedder):
    svc = build_services(make_settings(tmp_path / "data", tiny_model, max_tokens=16000, n_seq_max=2),
                         embedder=embedder)
    try:
        sid = svc.sessions.create("local")
        gen = svc.chat.stream_turn("local", sid, "Tell me a long story.", [])
        assert next(gen).kind == "token"
        svc.models.restart(reset=False)  # waits for the step in progress, then reloads
        with pytest.raises(EngineError, match="reloaded or unloaded while this answer was being written"):
            for _ in gen:
                pass
        events = list(svc.chat.stream_turn("local", sid, "Hello again.", [], Sampling(max_tokens=16, temperature=0.0)))
        assert events[-1].kind == "done" and events[-1].data["metrics"]["completion_tokens"] > 0
    finally:
        svc.close()
