"""Chat calls from several clients share the engine's sequences, wait in line when all are busy, see their place,
and cancel cleanly."""

from __future__ import annotations

import time

import pytest
from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import Client, handle_file
from gradio_client.utils import Status


@pytest.mark.slow
def test_four_clients_share_two_sequences_wait_their_turn_and_lose_nothing(tmp_path, tiny_model, embedder):
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=600, n_seq_max=2), embedder)  # ~1 s each
    try:
        doc = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "",
                                 api_name="/upload_document")
        clients = [Client(app.url, verbose=False) for _ in range(4)]
        sessions = [c.predict(api_name="/create_session") for c in clients]
        jobs = []
        for i, (client, sid) in enumerate(zip(clients, sessions)):
            jobs.append(client.submit(sid, f"Question {i}: who are the crazy ones?", [doc["doc_id"]], api_name="/chat"))
            time.sleep(0.2)  # a definite arrival order
        results = [job.result() for job in jobs]
        assert all(r["done"] and r["metrics"]["completion_tokens"] > 0 for r in results)
        places = [[o["queued"] for o in job.outputs() if o.get("queued")] for job in jobs]
        assert not places[0] and not places[1], "the first two start at once, one sequence each"
        assert places[2] or places[3], f"a client that finds both sequences busy is told its place: {places}"
        waited = [r["metrics"]["queue_place"] for r in results]
        assert waited[:2] == [0, 0] and max(waited[2:]) >= 1, waited
        for i, (client, sid) in enumerate(zip(clients, sessions)):
            messages = client.predict(sid, api_name="/get_history")["messages"]
            assert [m["role"] for m in messages] == ["user", "assistant"]
            assert messages[0]["content"].startswith(f"Question {i}:") and messages[1]["content"] == results[i]["text"]
    finally:
        stop(app)


@pytest.mark.slow
def test_a_cancelled_chat_frees_the_engine(tmp_path, tiny_model, embedder):
    # the tiny model streams thousands of tokens a second: a long budget, and cancel as soon as it streams
    app = launch(make_settings(tmp_path / "data", tiny_model, max_tokens=16000, n_ctx=16384), embedder)
    try:
        sid = app.client.predict(api_name="/create_session")
        job = app.client.submit(sid, "Write a very long story.", [], api_name="/chat")
        deadline = time.time() + 60
        while job.status().code != Status.ITERATING and time.time() < deadline:
            time.sleep(0.01)
        job.cancel()
        start = time.time()
        second = Client(app.url, verbose=False)
        other_job = second.submit(second.predict(api_name="/create_session"), "Hello?", [], api_name="/chat")
        while other_job.status().code != Status.ITERATING and not other_job.done() and time.time() < start + 120:
            time.sleep(0.01)
        waited = time.time() - start  # until the next answer streams: the engine was freed
        while not any(o["text"] for o in other_job.outputs()) and time.time() < start + 120:
            time.sleep(0.01)
        assert any(o["text"] for o in other_job.outputs()), "the next answer streams text"
        other_job.cancel()
        stored = app.client.predict(sid, api_name="/get_history")["messages"]
        assert stored[-1]["role"] == "assistant" and stored[-1].get("stopped") is True, "partial answer kept"
        assert stored[-1]["metrics"]["completion_tokens"] < 16000
        assert waited < 30, f"the next request waited {waited:.1f} s for a cancelled one"
    finally:
        stop(app)
