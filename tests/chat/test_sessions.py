"""Sessions against a real redis-server (the embedded one the app starts)."""

from __future__ import annotations

import time

import pytest
import redis

from backend.chat import SessionError, SessionNotFound, SessionStore
from backend.storage.redis_server import EmbeddedRedis


@pytest.fixture
def server(tmp_path):
    srv = EmbeddedRedis(tmp_path / "redis")
    srv.start()
    yield srv
    srv.stop()


def store_for(server: EmbeddedRedis, ttl_s: int = 3600) -> SessionStore:
    return SessionStore(redis.Redis.from_url(server.url, decode_responses=True), ttl_s)


@pytest.mark.slow
def test_create_append_get_delete(server):
    store = store_for(server)
    sid = store.create("alice")
    store.append("alice", sid, {"role": "user", "content": "  What is   KV caching?  "},
                 {"role": "assistant", "content": "Reusing attention state.", "metrics": {"mode": "cag"}})
    session = store.get("alice", sid)
    assert session.title == "What is KV caching?"
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    assert session.messages[1]["metrics"] == {"mode": "cag"}
    assert session.created_at <= session.last_updated
    with pytest.raises(SessionNotFound):
        store.get("bob", sid)  # another owner's key prefix never sees it
    assert store.delete("alice", sid) is True
    with pytest.raises(SessionNotFound, match="does not exist or has expired"):
        store.get("alice", sid)


@pytest.mark.slow
def test_ttl_is_refreshed_on_use_and_expiry_is_clean(server):
    store = store_for(server, ttl_s=2)
    sid = store.create("local")
    store.append("local", sid, {"role": "user", "content": "hi"})
    r = store.r
    key = f"kvc:local:session:{sid}"
    assert 0 < r.pttl(key) <= 2000 and 0 < r.pttl(key + ":messages") <= 2000
    time.sleep(1.2)
    store.get("local", sid)  # a read refreshes the TTL
    assert r.pttl(key) > 1500 and r.pttl(key + ":messages") > 1500
    time.sleep(2.3)
    with pytest.raises(SessionNotFound):
        store.get("local", sid)
    with pytest.raises(SessionNotFound):
        store.append("local", sid, {"role": "user", "content": "still there?"})


@pytest.mark.slow
def test_sessions_survive_a_server_restart(tmp_path):
    srv = EmbeddedRedis(tmp_path / "redis")
    srv.start()
    sid = store_for(srv).create("local")
    store_for(srv).append("local", sid, {"role": "user", "content": "persist me"})
    srv.stop()
    srv = EmbeddedRedis(tmp_path / "redis")
    srv.start()
    try:
        assert store_for(srv).get("local", sid).messages[0]["content"] == "persist me"
    finally:
        srv.stop()


@pytest.mark.slow
def test_dead_redis_gives_one_clear_sentence(server):
    store = store_for(server)
    sid = store.create("local")
    server.stop()
    for call in (lambda: store.create("local"), lambda: store.get("local", sid),
                 lambda: store.append("local", sid, {"role": "user", "content": "x"})):
        with pytest.raises(SessionError, match="not reachable") as err:
            call()
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_list_rename_and_expired_sessions_drop_out(server):
    store = store_for(server, ttl_s=60)
    first, second = store.create("alice"), store.create("alice")
    store.create("bob")
    store.append("alice", first, {"role": "user", "content": "First question"})
    assert [s.session_id for s in store.list("alice")] == [first, second], "most recently updated first"
    assert store.list("alice")[0].title == "First question"
    store.rename("alice", second, "  Budget   review ")
    listed = store.list("alice")
    assert [(s.session_id, s.title) for s in listed] == [(second, "Budget review"), (first, "First question")]
    with pytest.raises(SessionError, match="title is empty"):
        store.rename("alice", first, "   ")
    store.r.delete(store._key("alice", first))  # as if its TTL ran out
    assert [s.session_id for s in store.list("alice")] == [second]
    assert store.r.zscore("kvc:alice:sessions", first) is None, "the expired id leaves the index"
    with pytest.raises(SessionNotFound):
        store.rename("alice", first, "late")


@pytest.mark.slow
def test_sessions_through_the_api_export_with_sources_and_metrics(running_app):
    import json

    from conftest import TESTDATA
    from gradio_client import handle_file

    client = running_app.client
    doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", api_name="/upload_document")
    sid = client.predict(api_name="/create_session")
    client.predict(sid, "Who are the crazy ones?", [doc["doc_id"]], "rag", api_name="/chat")
    assert client.predict(sid, "Crazy ones", api_name="/rename_session") == {"session_id": sid, "title": "Crazy ones"}
    assert [(s["session_id"], s["title"]) for s in client.predict(api_name="/list_sessions")] == [(sid, "Crazy ones")]
    md = client.predict(sid, "markdown", api_name="/export_session")
    assert md["filename"] == "Crazy-ones.md" and md["content"].startswith("# Crazy ones")
    assert "## You · " in md["content"] and "Who are the crazy ones?" in md["content"]
    assert "rag · prompt " in md["content"] and "_Grounding: " in md["content"]
    data = json.loads(client.predict(sid, "json", api_name="/export_session")["content"])
    assert data["session_id"] == sid and [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["metrics"]["mode"] == "rag" and data["messages"][1]["retrieved"]
    assert data["messages"][1]["grounding"] in ("supported", "partial", "not_found")
    with pytest.raises(Exception, match="`format` must be one of"):
        client.predict(sid, "pdf", api_name="/export_session")
    client.predict(sid, api_name="/delete_session")
    assert client.predict(api_name="/list_sessions") == []


@pytest.mark.slow
def test_a_session_system_prompt_starts_its_own_prefix(running_app):
    from conftest import TESTDATA
    from gradio_client import handle_file

    client = running_app.client
    doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", True,
                         api_name="/upload_document")
    plain, pirate = client.predict(api_name="/create_session"), client.predict(api_name="/create_session")
    m = client.predict(plain, "Who are the crazy ones?", [doc["doc_id"]], api_name="/chat")["metrics"]
    assert m["prefix_tokens"] == doc["cache_tokens"] and m["cache_tier"] in ("live", "ram")
    got = client.predict(pirate, "Answer like a pirate.", api_name="/set_system_prompt")
    assert got == {"session_id": pirate, "system_prompt": "Answer like a pirate.", "custom": True}
    m = client.predict(pirate, "Who are the crazy ones?", [doc["doc_id"]], api_name="/chat")["metrics"]
    assert m["cache_tier"] == "miss" and m["prefix_tokens"] != doc["cache_tokens"], "the cache is rebuilt"
    assert client.predict(pirate, "", api_name="/set_system_prompt")["custom"] is False
    m = client.predict(pirate, "And now?", [doc["doc_id"]], api_name="/chat")["metrics"]
    assert m["prefix_tokens"] == doc["cache_tokens"] and m["cache_tier"] in ("ram", "disk", "live")


@pytest.mark.slow
def test_truncate_and_map_screen_positions_to_saved_messages(server):
    from components.chat import stored_index

    store = store_for(server)
    sid = store.create("alice")
    store.append("alice", sid, {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
                 {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"})
    screen = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "thinking…"},
              {"role": "assistant", "content": "a1"}, {"role": "assistant", "content": "[1] source"},
              {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]
    stored = store.get("alice", sid).messages
    assert stored_index(screen, 4, stored) == 2 and stored_index(screen, 0, stored) == 0
    with pytest.raises(ValueError, match="only a question"):
        stored_index(screen, 2, stored)
    store.truncate("alice", sid, 2)
    assert [m["content"] for m in store.get("alice", sid).messages] == ["q1", "a1"]
    store.truncate("alice", sid, 0)
    assert store.get("alice", sid).messages == []
