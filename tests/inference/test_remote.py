"""The remote backend against a real OpenAI-compatible server on loopback: llama-cpp-python's own
``llama_cpp.server`` serving the tiny synthetic model."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import handle_file
from gradio_client.exceptions import AppError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def openai_server(tiny_model, tmp_path):
    """``python -m llama_cpp.server`` on a free loopback port; yields its /v1 URL."""
    port = free_port()
    with (tmp_path / "server.log").open("w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model),
                                 "--model_alias", "tiny", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192"],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
    yield url, proc
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_chat_streams_through_a_remote_openai_server(tmp_path, embedder, openai_server):
    url, proc = openai_server
    app = launch(make_settings(tmp_path / "data", None, remote_base_url=url, remote_model="tiny",
                               remote_n_ctx=8192, max_tokens=24), embedder)
    try:
        client = app.client
        status = client.predict(api_name="/model_status")
        assert status["backend"].startswith(f"remote OpenAI-compatible server {url}")
        assert status["remote"] == {"reachable": True, "served_models": ["tiny"]}
        doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "",
                             api_name="/upload_document")
        primed = client.predict(doc["doc_id"], api_name="/cache_document")
        assert primed["tier"] == "remote" and primed["tokens"] > 100 and primed["bytes"] == 0

        sid = client.predict(api_name="/create_session")
        outputs = list(client.submit(sid, "Who are the crazy ones?", [doc["doc_id"]], api_name="/chat"))
        texts = [o["text"] for o in outputs if not o["done"]]
        assert len(set(texts)) >= 3, "the answer streams in pieces"
        m = outputs[-1]["metrics"]
        assert m["mode"] == "cag" and m["cache_tier"] == "remote" and m["completion_tokens"] > 0
        assert m["prompt_tokens"] > primed["tokens"] and m["ttft_s"] is not None and "server_cached_tokens" in m
        assert m["prefix_tokens"] == primed["tokens"], "the document prefix is the same bytes every time"

        second = client.predict(sid, "And the misfits?", [doc["doc_id"]], api_name="/chat")
        assert second["metrics"]["history_messages"] == 2 and second["text"]
        third = client.predict(sid, "Briefly?", [doc["doc_id"]], "auto", False, api_name="/chat")  # /no_think
        assert third["done"] and third["thinking"] == ""
        history = client.predict(sid, api_name="/get_history")["messages"]
        assert [m["role"] for m in history] == ["user", "assistant"] * 3
        assert history[4]["content"] == "Briefly?", "the thinking switch goes to the prompt, not the history"

        proc.terminate()
        proc.wait(10)
        with pytest.raises(AppError, match="cannot be reached"):
            client.predict(sid, "Still there?", [], api_name="/chat")
        assert len(client.predict(sid, api_name="/get_history")["messages"]) == 6, "nothing lost"
    finally:
        stop(app)


@pytest.mark.parametrize("final_chunk, cached", [
    # vLLM / OpenAI: usage with prompt_tokens_details (stream_options.include_usage)
    ({"choices": [], "usage": {"prompt_tokens": 900, "completion_tokens": 7,
                               "prompt_tokens_details": {"cached_tokens": 880}}}, 880),
    # llama.cpp's llama-server: timings.cache_n on the last chunk
    ({"choices": [{"delta": {}, "finish_reason": "stop"}], "timings": {"cache_n": 850, "prompt_n": 50}}, 850),
    # llama_cpp.server: neither
    ({"choices": [{"delta": {}, "finish_reason": "length"}]}, None),
])
def test_server_reported_cache_counts_are_read(final_chunk, cached):
    from backend.inference import RemoteEngine, StreamStats

    stats = StreamStats(prompt_tokens=900)
    assert RemoteEngine._event({"choices": [{"delta": {"content": "Hi"}}]}, stats) == "Hi"
    assert RemoteEngine._event(final_chunk, stats) == ""
    assert stats.server_cached_tokens == cached and stats.reused_tokens == (cached or 0)
    assert stats.stop_reason in ("", "eos", "length")
