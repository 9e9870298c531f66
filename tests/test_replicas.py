"""The KV cache across machines: real llama-server replicas on loopback (built from the llama.cpp that
llama-cpp-python vendors), a shared slot directory, the real SmolLM2 and the tiny synthetic model, the app's own
services answering through them.

* Cache primes a document on its replica and saves the slot; a question goes to the prefix's replica and reuses it;
* a replica killed: the next question goes to the other one, which restores the same file; restarted, its first
  question restores from disk;
* a cache primed in-process is restored by a replica, and a replica's slot in-process (the header and token list
  alone converted);
* a replica killed mid-answer: the answer so far is kept; every replica down: one sentence, nothing saved;
* a slot file that fails to restore is erased and the prefix recomputed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import TESTDATA, make_settings
from replicas_run import replicas

from backend.inference import ReplicaError, Sampling
from backend.services import build_services

pytestmark = pytest.mark.slow  # each starts llama-server processes

OWNER = "local"
GREEDY = Sampling(max_tokens=24, temperature=0.0)
PDF = TESTDATA / "pdf" / "pypdf_crazyones.pdf"
LAYOUT = {"KVC_N_CTX": "4096", "KVC_N_SEQ_MAX": "2"}  # the replicas' flags come from these, as the app's do


def settings(data: Path, model: Path, slot_dir: Path, urls: list[str] | None, **overrides):
    return make_settings(data, model, n_ctx=4096, n_seq_max=2, cag_max_tokens=4096, remote_slot_dir=slot_dir,
                         remote_base_url=",".join(urls) if urls else None, **overrides)


def ask(svc, doc_id: str, question: str, sampling: Sampling = GREEDY) -> tuple[str, dict]:
    sid = svc.sessions.create(OWNER)
    for event in svc.chat.stream_turn(OWNER, sid, question, [doc_id], sampling, mode="cag"):
        if event.kind == "done":
            return event.text, event.data["metrics"]
    raise AssertionError("no done event")


@pytest.fixture
def pair(tmp_path, smollm2):
    """Two SmolLM2 replicas sharing one slot directory."""
    procs = replicas(smollm2, tmp_path / "slots", 2, LAYOUT)
    yield procs
    for p in procs:
        p.stop()


def test_questions_go_where_their_cache_is_and_survive_a_replica_kill(tmp_path, smollm2, embedder, pair):
    svc = build_services(settings(tmp_path / "data", smollm2, tmp_path / "slots", [p.url for p in pair]), embedder)
    try:
        doc = svc.documents.upload(OWNER, PDF)[0].doc_id
        primed = svc.primer.cache_documents(OWNER, [doc])
        assert primed["tier"] == "miss" and primed["bytes"] > 0, "computed on its replica and saved"
        (entry,) = svc.caches.list(OWNER)
        assert entry.tier == "remote" and entry.usable and entry.tokens == primed["tokens"]
        assert svc.caches.cached(OWNER), "the document shows as cached"
        first, m1 = ask(svc, doc, "Who are the misfits?")
        home = m1["replica"]
        assert m1["cache_tier"] == "slot" and m1["server_cached_tokens"] >= primed["tokens"]
        assert ask(svc, doc, "Who are the misfits?")[1]["replica"] == home, "the same prefix, the same replica"

        killed = next(p for p in pair if p.url == home)
        killed.kill()
        again, m2 = ask(svc, doc, "Who are the misfits?")
        assert m2["replica"] != home and m2["cache_tier"] == "restored"
        assert m2["server_cached_tokens"] >= 0.95 * primed["tokens"] and again == first

        killed.start()  # restarted (its /health answers), and the other one killed: a question asked at once
        survivor = next(p for p in pair if p.url != home)
        survivor.kill()  # finds every replica it knows as up failing, probes them all again and goes to the restarted one
        back, m3 = ask(svc, doc, "Who are the misfits?")
        assert m3["replica"] == home and m3["cache_tier"] == "restored" and back == first
        survivor.start()
        status = {r["url"]: r for r in svc.chat.replicas.pool.status()}
        assert all(r["up"] for r in status.values())
    finally:
        svc.close()


def test_one_cache_both_engines(tmp_path, smollm2, embedder, pair):
    """A document cached in-process is restored by a replica without being read again, and a slot a replica
    saved is restored in-process; the answers are the same token for token."""
    data, slots = tmp_path / "data", tmp_path / "slots"
    local = build_services(settings(data, smollm2, slots, None), embedder)
    try:
        doc = local.documents.upload(OWNER, TESTDATA / "md_txt" / "pandoc_tables.md")[0].doc_id  # small: 1 thread
        assert local.primer.cache_documents(OWNER, [doc])["tier"] == "miss"
        in_process, _ = ask(local, doc, "What is this about?")
    finally:
        local.close()
    remote = build_services(settings(data, smollm2, slots, [p.url for p in pair]), embedder)
    try:
        text, m = ask(remote, doc, "What is this about?")
        assert m["cache_tier"] == "exported" and m["server_cached_tokens"] >= 0.95 * m["prefix_tokens"]
        assert text == in_process
        other = remote.documents.upload(OWNER, PDF)[0].doc_id
        assert remote.primer.cache_documents(OWNER, [other])["tier"] == "miss"  # saved by a replica
        by_replica, _ = ask(remote, other, "Who are the misfits?")
    finally:
        remote.close()
    for key in [e.key for e in build_kv_entries(data)]:
        (data / "kvcache" / f"{key}.kv").unlink()
    local = build_services(settings(data, smollm2, slots, None), embedder)
    try:
        text, m = ask(local, other, "Who are the misfits?")
        assert m["cache_tier"] == "slot" and m["reused_tokens"] >= m["prefix_tokens"], "restored in-process"
        assert text == by_replica
    finally:
        local.close()


def build_kv_entries(data: Path):
    from backend.kvcache import KVCacheStore

    return KVCacheStore(data / "kvcache", 1 << 40).entries()


def test_a_restore_that_fails_is_erased_and_recomputed(tmp_path, smollm2, embedder, pair):
    slots = tmp_path / "slots"
    svc = build_services(settings(tmp_path / "data", smollm2, slots, [p.url for p in pair]), embedder)
    try:
        doc = svc.documents.upload(OWNER, PDF)[0].doc_id
        svc.primer.cache_documents(OWNER, [doc])
        expected, _ = ask(svc, doc, "Who are the misfits?")
        (slot_file,) = slots.glob("*.bin")
        data = bytearray(slot_file.read_bytes())
        data[4:8] = (99).to_bytes(4, "little")  # another llama.cpp state version: llama-server refuses it
        slot_file.write_bytes(bytes(data))
        svc.chat.replicas.pool.maps.clear()  # forget what the slots hold: the next question must restore
        fp = svc.chat.replicas.pool.up()[0].fingerprint  # the sidecar agrees with the changed file: only llama.cpp
        svc.chat.replicas.slots.record(slot_file.stem, fp, _tokens(slot_file), [doc], OWNER)  # can tell
        text, m = ask(svc, doc, "Who are the misfits?")
        assert m["cache_tier"] == "miss" and text == expected, "refused, erased, computed again"
        assert svc.chat.replicas.slots.get(slot_file.stem) is not None, "and saved again, readable"
        assert int.from_bytes(slot_file.read_bytes()[4:8], "little") != 99
    finally:
        svc.close()


def _tokens(slot_file: Path) -> list[int]:
    import json

    return json.loads(slot_file.with_suffix(".json").read_text())["tokens"]


def test_a_replica_killed_mid_answer_keeps_the_answer_so_far_and_all_down_says_so(tmp_path, tiny_model, embedder):
    procs = replicas(tiny_model, tmp_path / "slots", 2, LAYOUT)
    svc = build_services(settings(tmp_path / "data", tiny_model, tmp_path / "slots", [p.url for p in procs]),
                         embedder)
    try:
        doc = svc.documents.upload(OWNER, PDF)[0].doc_id
        sid = svc.sessions.create(OWNER)
        long = Sampling(max_tokens=3000, temperature=0.0, ignore_eos=True)
        events, pieces = svc.chat.stream_turn(OWNER, sid, "Go on.", [doc], long, mode="cag"), 0
        answering = None
        for event in events:
            if event.kind == "token":
                pieces += 1
                if pieces == 20:
                    answering = next(p for p in procs if p.url in _busy_replicas(svc))
                    threading.Thread(target=answering.kill).start()
            if event.kind == "done":
                done = event
        assert done.data["metrics"]["stop_reason"] == "replica lost" and done.text
        saved = svc.sessions.get(OWNER, sid).messages
        assert saved[-1]["content"] == done.text and saved[-1].get("stopped") is True, "the answer so far is kept"
        _, m = ask(svc, doc, "And then?", Sampling(max_tokens=8, temperature=0.0))
        assert m["replica"] != answering.url, "the next answer comes from the other replica"
        for p in procs:
            p.kill()
        before = len(svc.sessions.get(OWNER, sid).messages)
        with pytest.raises(ReplicaError, match="Every inference replica") as err:
            list(svc.chat.stream_turn(OWNER, sid, "Still there?", [doc], GREEDY, mode="cag"))
        assert "\n" not in str(err.value) and len(svc.sessions.get(OWNER, sid).messages) == before
    finally:
        svc.close()
        for p in procs:
            p.stop()


def _busy_replicas(svc) -> set[str]:
    """The URLs of the replicas with a slot the app is using right now."""
    pool = svc.chat.replicas.pool
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        busy = {url for url, m in pool.maps.items() if any(m.busy)}
        if busy:
            return busy
        time.sleep(0.01)
    return set()


@pytest.mark.browser
def test_a_conversation_about_a_pdf_goes_on_while_a_replica_is_killed_and_restarted(tmp_path, smollm2, embedder,
                                                                                   pair, browser):
    """As a user meets it, in Chromium: a real PDF cached on the replicas, one question; the replica that answered
    is killed, the next answer comes from the other one, its line saying the cache was restored there; the killed
    one restarted, the conversation goes on."""
    import re

    from browsing import open_app, upload
    from conftest import launch, stop

    app = launch(settings(tmp_path / "data", smollm2, tmp_path / "slots", [p.url for p in pair], max_tokens=32),
                 embedder)
    try:
        page = open_app(browser, app.url, height=1200)
        upload(page, TESTDATA / "pdf" / "pypdf_crazyones.pdf", re.compile(r"pypdf_crazyones\.pdf: \d+ page"))
        page.get_by_role("button", name="Cache", exact=True).click()
        page.get_by_text(re.compile(r"cached in [0-9.]+ s: ")).wait_for(timeout=300_000)
        box = page.get_by_placeholder("Ask about your documents…")
        lines = page.get_by_text(re.compile(r"· prompt [\d,]+ tok · reused"))

        def ask_in_page(question: str, n: int) -> str:
            box.fill(question)
            box.press("Enter")
            lines.nth(n - 1).wait_for(timeout=300_000)
            return lines.nth(n - 1).inner_text()

        first = ask_in_page("Who are the misfits?", 1)
        home = re.search(r"on 127\.0\.0\.1:(\d+)", first).group(1)
        killed = next(p for p in pair if str(p.port) == home)
        killed.kill()
        second = ask_in_page("What do they push forward?", 2)
        assert f"127.0.0.1:{home}" not in second and re.search(r"\((restored|slot) on 127\.0\.0\.1:\d+\)", second)
        killed.start()
        third = ask_in_page("Who sees things differently?", 3)
        assert "reused" in third
        page.screenshot(path=str(tmp_path / "replicas.png"))  # looked at: pytest --basetemp DIR keeps it
    finally:
        stop(app)
