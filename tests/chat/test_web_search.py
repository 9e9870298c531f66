"""Web search against a small real HTTP server on loopback that serves SearXNG-shaped JSON, a
slow endpoint and a failing one; then a whole chat turn that uses it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import launch, make_settings, stop

from backend.chat import WebSearchError, needs_web, search_web

RESULTS = [{"title": "Qwen3 released", "url": "https://example.org/qwen3", "content": "Qwen3 comes in  six sizes."},
           {"title": "No URL here", "content": "skipped"},
           {"title": "llama.cpp b9999", "url": "https://example.org/llama", "content": "A new build."}]


@pytest.fixture(scope="module")
def searx():
    """/search: SearXNG JSON; /slow: answers after 2 s; /broken: HTTP 500; /html: not JSON."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            url = urlparse(self.path)
            seen.append({"path": url.path, **{k: v[0] for k, v in parse_qs(url.query).items()}})
            if url.path == "/slow":
                time.sleep(2)
            if url.path == "/broken":
                self.send_response(500)
                self.end_headers()
                return
            body = b"<html>maintenance</html>" if url.path == "/html" else json.dumps(
                {"query": parse_qs(url.query).get("q", [""])[0], "results": RESULTS}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_search_success_timeout_500_and_no_endpoint(searx):
    base, seen = searx
    results = search_web(f"{base}/search", "latest Qwen release", limit=5, timeout_s=2)
    assert [(r.title, r.url) for r in results] == [("Qwen3 released", "https://example.org/qwen3"),
                                                   ("llama.cpp b9999", "https://example.org/llama")]
    assert results[0].snippet == "Qwen3 comes in six sizes."
    assert seen[-1] == {"path": "/search", "q": "latest Qwen release", "format": "json"}
    assert len(search_web(f"{base}/search", "x", limit=1)) == 1
    with pytest.raises(WebSearchError, match=r"^Web search timed out after 0.5 s, so this answer does not use"):
        search_web(f"{base}/slow", "x", timeout_s=0.5)
    with pytest.raises(WebSearchError, match=r"^Web search failed \(HTTP 500\)"):
        search_web(f"{base}/broken", "x")
    with pytest.raises(WebSearchError, match="other than SearXNG JSON"):
        search_web(f"{base}/html", "x")
    with pytest.raises(WebSearchError, match="not set up"):
        search_web(None, "x")


def test_router_picks_time_sensitive_questions():
    assert needs_web("What is the latest version of llama.cpp?") and needs_web("Any news on Qwen today?")
    assert needs_web("Who won the election in 2026?")
    assert not needs_web("What does the contract say about termination?")
    assert not needs_web("Summarize section 3 of the paper.")


@pytest.mark.slow
def test_a_chat_turn_with_web_results_and_with_a_failing_search(tmp_path, tiny_model, embedder, searx):
    base, _ = searx
    app = launch(make_settings(tmp_path / "data", tiny_model, search_url=f"{base}/search", search_timeout_s=1.0),
                 embedder)
    try:
        client = app.client
        sid = client.predict(api_name="/create_session")
        last = client.predict(sid, "What is the latest Qwen release?", [], api_name="/chat")  # the router: on
        assert [w["url"] for w in last["web_sources"]] == ["https://example.org/qwen3", "https://example.org/llama"]
        assert last["metrics"]["web_results"] == 2 and last["metrics"]["web_note"] == ""
        saved = client.predict(sid, api_name="/get_history")["messages"]
        assert saved[0]["content"] == "What is the latest Qwen release?"
        assert "[W1] Qwen3 released (https://example.org/qwen3)" in saved[0]["sent"], "results go in the user turn"
        assert saved[1]["web_sources"][0]["title"] == "Qwen3 released"
        off = client.predict(sid, "What is the latest Qwen release?", [], "auto", None, False, api_name="/chat")
        assert off["web_sources"] == [] and off["metrics"]["web_note"] == "", "the user can always switch it off"

        app.services.settings.search_url = f"{base}/broken"
        failed = client.predict(sid, "Any news today?", [], api_name="/chat")
        assert failed["done"] and failed["text"] and failed["web_sources"] == []
        assert failed["metrics"]["web_note"].startswith("Web search failed (HTTP 500)")
        app.services.settings.search_url = None
        forced = client.predict(sid, "Search this please.", [], "auto", None, True, api_name="/chat")
        assert forced["text"] and "not set up" in forced["metrics"]["web_note"]
    finally:
        stop(app)
