"""Stops and outages lose nothing: SIGTERM and Ctrl-C end the app cleanly, a killed Redis comes back."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from apprun import processes_with, running, start_app
from conftest import make_settings
from gradio_client import Client

from backend.chat import SessionError
from backend.services import build_services
from backend.storage.redis_server import EmbeddedRedis

pytestmark = pytest.mark.slow  # each starts an app, some as its own process

OWNER = "local"


def ask(services, sid: str, question: str) -> str:
    """One turn through the chat service; returns the saved answer's text."""
    return next(e for e in services.chat.stream_turn(OWNER, sid, question, []) if e.kind == "done").text


def wait_for(check, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_the_answer_in_flight_and_leaves_no_process(tmp_path, tiny_model, embedder, signum):
    data = tmp_path / "data"
    # an answer that runs until it is stopped: every token is kept (ignore_eos) up to a long max_tokens
    proc, url = start_app(tmp_path, {"KVC_DATA_DIR": str(data), "KVC_MODEL_PATH": str(tiny_model),
                                     "KVC_MAX_TOKENS": "12000", "KVC_IGNORE_EOS": "true", "KVC_N_CTX": "16384",
                                     "KVC_SHUTDOWN_GRACE_S": "1"})
    try:
        redis_pids = processes_with(str(data / "redis"))
        assert len(redis_pids) == 1, "the app runs its own redis-server"
        client = Client(url, verbose=False)
        sid = client.predict(api_name="/create_session")
        job = client.submit(sid, "Tell me everything.", [], api_name="/chat")
        wait_for(lambda: any(o.get("text") for o in job.outputs()), "the answer to start streaming")
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not running(redis_pids[0]) and processes_with(str(data)) == [], "nothing of the app is left running"
    log = (tmp_path / "app.log").read_text()
    assert "stopped cleanly" in log and "answers stopped and saved as partial" in log, log[-2000:]
    services = build_services(make_settings(data, tiny_model), embedder=embedder)  # Redis reloads its files
    try:
        user, answer = services.sessions.get(OWNER, sid).messages
        assert user["content"] == "Tell me everything." and answer["stopped"] and len(answer["content"]) > 0
    finally:
        services.close()


def test_a_killed_embedded_redis_is_started_again_and_nothing_is_lost(tmp_path, tiny_model, embedder):
    services = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    try:
        server = services.redis_server
        sid = services.sessions.create(OWNER)
        first = ask(services, sid, "Before the outage?")
        old = server.process.pid
        os.kill(old, signal.SIGKILL)
        second = ask(services, sid, "During the outage?")  # the client retries while the watcher restarts it
        assert server.restarts == 1 and server.process.pid != old and running(server.process.pid)
        assert not running(old)
        saved = [m["content"] for m in services.sessions.get(OWNER, sid).messages]
        assert saved == ["Before the outage?", first, "During the outage?", second]
    finally:
        services.close()
    assert processes_with(str(tmp_path / "data" / "redis")) == []


def test_a_redis_outage_ends_the_turn_with_a_sentence_and_the_app_serves_again(tmp_path, tiny_model, embedder):
    external = EmbeddedRedis(tmp_path / "external-redis")  # a Redis the app does not own (REDIS_URL)
    external.start()
    services = build_services(make_settings(tmp_path / "data", tiny_model, redis_url=external.url), embedder=embedder)
    try:
        sid = services.sessions.create(OWNER)
        first = ask(services, sid, "Before the outage?")
        external.stop()  # saved and gone, and nobody restarts it
        started = time.monotonic()
        with pytest.raises(SessionError, match="not reachable") as err:
            ask(services, sid, "During the outage?")
        assert "\n" not in str(err.value) and time.monotonic() - started < 30
        external.start()  # back: the same client reconnects by itself
        wait_for(lambda: redis_answers(services), "the app to reach Redis again", 30)
        third = ask(services, sid, "After the outage?")
        saved = [m["content"] for m in services.sessions.get(OWNER, sid).messages]
        assert saved == ["Before the outage?", first, "After the outage?", third]
    finally:
        services.close()
        external.stop()


def redis_answers(services) -> bool:
    try:
        return bool(services.redis_client.ping())
    except redis.RedisError:
        return False
