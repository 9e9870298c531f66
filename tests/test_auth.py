"""Sign-in, roles and isolation through the real app: local accounts from the users file (made by the CLI),
two users signed in with gradio_client trying each other's ids, and an admin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from conftest import ROOT, TESTDATA, launch, make_settings, stop
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

import app as app_module
from backend.access.auth import Users, hash_password, verify_password
from backend.config import Settings

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "root": "root-secret-333"}


def test_the_cli_stores_salted_hashes_never_the_password(tmp_path):
    users_file = tmp_path / "users.json"
    for name, admin in (("alice", False), ("root", True)):
        args = [sys.executable, "-m", "backend.access", "--users-file", str(users_file), "add-user", name,
                "--password-stdin"] + (["--admin"] if admin else [])
        done = subprocess.run(args, input=PASSWORDS[name] + "\n", capture_output=True, text=True, cwd=ROOT, check=False)
        assert done.returncode == 0, done.stderr
    text = users_file.read_text()
    assert all(p not in text for p in PASSWORDS.values()) and text.count("scrypt$") == 2
    users = Users(users_file)
    assert users.check("alice", PASSWORDS["alice"]) and not users.check("alice", PASSWORDS["root"])
    assert not users.check("mallory", "anything-at-all") and users.admins() == {"root"}
    assert (users_file.stat().st_mode & 0o777) == 0o600
    a, b = json.loads(text)["users"]["alice"]["hash"], hash_password(PASSWORDS["alice"])
    assert a != b and verify_password(PASSWORDS["alice"], b)  # a fresh salt each time
    short = subprocess.run([sys.executable, "-m", "backend.access", "--users-file", str(users_file), "add-user",
                            "../etc", "--password-stdin"], input="long-enough-pw\n", capture_output=True, text=True,
                           cwd=ROOT, check=False)
    assert short.returncode == 1 and "not a valid user name" in short.stderr


def test_an_open_start_is_refused_in_one_sentence_unless_allowed(tmp_path, capsys):
    data = str(tmp_path / "data")
    for flags in (["--share"], ["--host", "0.0.0.0"]):
        assert app_module.main([*flags, "--data-dir", data]) == 2
        message = capsys.readouterr().err.strip()
        assert "\n" not in message and "add-user NAME" in message and "--allow-anonymous" in message, message
    users = Users(tmp_path / "data" / "users.json")
    assert app_module.open_refusal(Settings(data_dir=data, share=True, allow_anonymous=True), users) is None
    assert app_module.open_refusal(Settings(data_dir=data), users) is None  # loopback: the single-user default
    users.add("alice", PASSWORDS["alice"])
    assert app_module.open_refusal(Settings(data_dir=data, share=True), users) is None
    assert "MCP clients cannot sign in" in app_module.open_refusal(Settings(data_dir=data, mcp_server=True), users)


def start_signed_in(tmp_path, tiny_model, embedder, **overrides):
    """The app with three accounts (root is an admin) and a client signed in as each."""
    users = Users(tmp_path / "users.json")
    for name, password in PASSWORDS.items():
        users.add(name, password, admin=name == "root")
    app = launch(make_settings(tmp_path / "data", tiny_model, users_file=users.path,
                               extra_model_dirs=[tiny_model.parent], **overrides), embedder)
    return app, {name: Client(app.url, auth=(name, password), verbose=False) for name, password in PASSWORDS.items()}


@pytest.fixture
def signed_in(tmp_path, tiny_model, embedder):
    app, clients = start_signed_in(tmp_path, tiny_model, embedder)
    yield app, clients
    stop(app)


def refused(client: Client, *args, api_name: str) -> str:
    with pytest.raises(AppError) as err:
        result = client.predict(*args, api_name=api_name)
        if api_name == "/chat":
            list(result)
    return str(err.value)


@pytest.mark.slow
def test_a_second_user_can_neither_see_nor_touch_the_firsts_data(signed_in):
    app, clients = signed_in
    alice, bob = clients["alice"], clients["bob"]
    doc = alice.predict(handle_file(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")), "", True,
                        api_name="/upload_document")
    sid = alice.predict(api_name="/create_session")
    *_, answer = alice.submit(sid, "What is this document about?", [doc["doc_id"]], api_name="/chat")
    assert answer["done"]
    (cache,) = alice.predict(api_name="/list_caches")
    before = {name: alice.predict(api_name=name) for name in ("/list_documents", "/list_sessions", "/list_caches")}

    d, s, k = doc["doc_id"], sid, cache["key"]
    attempts = {
        "/get_document_text": (d,), "/reindex_document": (d,), "/delete_document": (d,), "/cache_document": (d,),
        "/search_documents": ("document", [d], 3), "/delete_cache": (k,), "/get_history": (s,),
        "/rename_session": (s, "mine now"), "/set_system_prompt": (s, "leak"), "/export_session": (s, "json"),
        "/delete_session": (s,), "/chat": (s, "hello", [d]), "/prefetch": (s, [d]),
    }
    for api_name, args in attempts.items():
        message = refused(bob, *args, api_name=api_name)
        assert "does not exist" in message or "not found" in message, (api_name, message)
        assert "sf_pdflatex" not in message and "What is this document" not in message, (api_name, message)
    assert bob.predict(api_name="/list_documents") == [] and bob.predict(api_name="/list_sessions") == []
    assert bob.predict(api_name="/list_caches") == []
    bob_doc = bob.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", False,
                          "../../../alice/\x1bcrazy\u202e.pdf", api_name="/upload_document")
    assert bob_doc["name"] == "crazy.pdf"  # no path parts, no control or bidi characters
    uploads = app.services.settings.data_dir / "uploads"
    assert (uploads / bob_doc["doc_id"] / "crazy.pdf").is_file() and len(list(uploads.rglob("*.pdf"))) == 2
    hits = bob.predict("document section table", [], 10, api_name="/search_documents")
    assert hits and {h["doc_id"] for h in hits} == {bob_doc["doc_id"]}
    assert all(d not in json.dumps(bob.predict(api_name=n)) for n in ("/list_documents", "/model_status"))
    mine = bob.predict(api_name="/create_session")  # memory recall reaches only bob's own past questions
    *_, last = bob.submit(mine, "What is this document about?", [], "auto", None, False, True, api_name="/chat")
    assert last["metrics"]["memories"] == 0
    exported = bob.predict(mine, "json", api_name="/export_session")["content"]
    assert "sf_pdflatex" not in exported and s not in exported
    # and alice lost nothing
    assert {name: alice.predict(api_name=name) for name in before} == before
    assert len(alice.predict(s, api_name="/get_history")["messages"]) == 2


@pytest.mark.slow
def test_only_an_admin_manages_models_and_reads_logs(signed_in, tmp_path, tiny_model):
    app, clients = signed_in
    bob, root = clients["bob"], clients["root"]
    for api_name, args in {"/load_model": (str(tiny_model),), "/unload_model": (), "/restart_model": (False,),
                           "/list_log_runs": (), "/get_logs": ("", "INFO", 10)}.items():
        assert "Only an admin" in refused(bob, *args, api_name=api_name), api_name
    assert app.services.engine.loaded
    seen = bob.predict(api_name="/model_status")  # the model's name, not the server's insides
    assert seen["model"] == tiny_model.name and str(tiny_model.parent) not in json.dumps(seen)
    assert "model_path" not in seen and "rss_bytes" not in seen and set(seen["caches"]) == {"yours"}
    assert all("model_file" not in m and "/" not in m["name"] for m in bob.predict(api_name="/list_models"))
    full = root.predict(api_name="/model_status")
    assert full["model_path"] == str(tiny_model) and "disk" in full["caches"]
    assert root.predict(api_name="/list_log_runs") and root.predict("", "INFO", 5, api_name="/get_logs")["lines"]
    outside = tmp_path / "elsewhere" / "tiny.gguf"
    outside.parent.mkdir()
    outside.write_bytes(tiny_model.read_bytes())
    for path in (str(outside), "/etc/passwd", str(tiny_model.parent / ".." / "x.gguf")):
        assert "load only from the model folders" in refused(root, path, api_name="/load_model"), path
    assert root.predict(str(tiny_model), api_name="/load_model")["loaded"]


@pytest.mark.slow
def test_a_user_over_a_limit_gets_the_wait_and_others_are_unaffected(tmp_path, tiny_model, embedder):
    app, clients = start_signed_in(tmp_path, tiny_model, embedder, questions_per_minute=2, quota_documents=1)
    try:
        sids = {name: c.predict(api_name="/create_session") for name, c in clients.items()}
        for _ in range(2):
            assert list(clients["alice"].submit(sids["alice"], "Hi?", [], api_name="/chat"))[-1]["done"]
        message = refused(clients["alice"], sids["alice"], "Hi again?", [], api_name="/chat")
        assert "limit of 2 questions per minute" in message and re.search(r"try again in \d+ s", message), message
        assert list(clients["bob"].submit(sids["bob"], "Hi?", [], api_name="/chat"))[-1]["done"]  # unaffected
        for _ in range(3):  # an admin is exempt
            assert list(clients["root"].submit(sids["root"], "Hi?", [], api_name="/chat"))[-1]["done"]
        pdf = handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf"))
        clients["bob"].predict(pdf, "", False, api_name="/upload_document")
        message = refused(clients["bob"], handle_file(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")), "", False,
                          api_name="/upload_document")
        assert "delete some to upload more" in message, message
        assert len(clients["bob"].predict(api_name="/list_documents")) == 1
        assert len(alice_history := clients["alice"].predict(sids["alice"], api_name="/get_history")["messages"]) == 4
        assert all(m["role"] in ("user", "assistant") for m in alice_history)  # the refused question left no trace
    finally:
        stop(app)


@pytest.mark.slow
def test_the_same_document_text_shares_no_kv_cache_between_users(signed_in):
    _app, clients = signed_in
    alice, bob = clients["alice"], clients["bob"]
    pdf = str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    docs = {name: c.predict(handle_file(pdf), "", False, api_name="/upload_document") for name, c in clients.items()
            if name in ("alice", "bob")}
    alice.predict(docs["alice"]["doc_id"], api_name="/cache_document")

    def ask(client, name):
        sid = client.predict(api_name="/create_session")
        return list(client.submit(sid, "Who are the crazy ones?", [docs[name]["doc_id"]], api_name="/chat"))[-1]["metrics"]

    first = ask(bob, "bob")  # alice's prefix of the very same tokens is in the context and on disk
    assert first["cache_tier"] == "miss" and first["reused_tokens"] == 0, first
    again = ask(alice, "alice")  # hers comes from her own sequence or entry, never from bob's sequence
    assert again["cache_tier"] in ("live", "ram", "disk") and again["reused_tokens"] >= again["prefix_tokens"], again
    keys = {name: {c["key"] for c in clients[name].predict(api_name="/list_caches")} for name in ("alice", "bob")}
    assert keys["alice"] and keys["bob"] and not keys["alice"] & keys["bob"]
    every = {c["key"]: c["owner"] for c in clients["root"].predict(api_name="/list_caches")}  # an admin sees all
    assert {k: every[k] for k in keys["alice"] | keys["bob"]} == {**dict.fromkeys(keys["alice"], "alice"),
                                                                   **dict.fromkeys(keys["bob"], "bob")}


@pytest.mark.slow
def test_a_users_answers_at_once_are_capped_while_others_stream_beside_them(tmp_path, tiny_model, embedder):
    """With continuous batching one user could hold every sequence: ``max_concurrent_turns`` caps them."""
    app, clients = start_signed_in(tmp_path, tiny_model, embedder, max_concurrent_turns=1, max_tokens=16000,
                                   n_seq_max=4)
    try:
        alice, bob = clients["alice"], clients["bob"]
        first = alice.submit(alice.predict(api_name="/create_session"), "Tell me a long story.", [], api_name="/chat")
        deadline = time.monotonic() + 60
        while not any(o.get("text") for o in first.outputs()) and time.monotonic() < deadline:
            time.sleep(0.01)
        message = refused(alice, alice.predict(api_name="/create_session"), "And another?", [], api_name="/chat")
        assert "answers in progress, the most allowed at once" in message, message
        beside = bob.submit(bob.predict(api_name="/create_session"), "Hello?", [], api_name="/chat")
        while not any(o.get("text") for o in beside.outputs()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not first.done(), "bob's answer streamed while alice's was still being written"
        first.cancel()
        beside.cancel()
    finally:
        stop(app)
