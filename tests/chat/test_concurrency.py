"""Concurrent chats decode together in one llama.cpp context (continuous batching), on the real
SmolLM2-135M-Instruct model, greedy: each answer keeps to its own sequence's document, an answer
is the same tokens alone or beside three others, and stopping one leaves the others streaming."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import make_settings

from backend.inference import Sampling
from backend.services import build_services

pytestmark = pytest.mark.slow  # several real-model answers at once

DOCS = {  # file name -> (document, question, what only this document's answer contains)
    "vellmora.md": (("# Harbor Lighthouse of Vellmora\n\nThe Harbor Lighthouse of Vellmora was built in 1887 by "
                    "the engineer Odile Marchetti. The lighthouse is 47 meters tall and its lamp is green.\n"),
                    "Who built the Harbor Lighthouse of Vellmora?", "Odile Marchetti"),
    "mill.md": (("# Kestrel Mill\n\nThe Kestrel Mill was built in 1902 by the miller Ferdinand Albescu. "
                "Its water wheel is painted red and turns on the river Dunmore.\n"),
                "Who built the Kestrel Mill?", "Ferdinand Albescu"),
    "observatory.md": (("# Tallis Ridge Observatory\n\nThe Tallis Ridge Observatory was founded in 1931 by the "
                       "astronomer Margit Sorensby. Its main telescope has a mirror 2 meters wide.\n"),
                       "Who founded the Tallis Ridge Observatory?", "Margit Sorensby"),
    "bridge.md": (("# Orvane Bridge\n\nThe Orvane Bridge was designed in 1874 by the architect Cassius Delahunt. "
                  "It has nine stone arches and crosses the river Sell.\n"),
                  "Who designed the Orvane Bridge?", "Cassius Delahunt"),
}
GREEDY = Sampling(max_tokens=40, temperature=0.0)


@pytest.fixture
def services(tmp_path, smollm2, embedder):
    svc = build_services(make_settings(tmp_path / "data", smollm2, n_ctx=2048, max_tokens=40, turn_datetime=False,
                                       n_threads=None, n_seq_max=4), embedder=embedder)
    assert svc.engine.loaded and svc.engine.n_seq_max == 4, svc.model_error
    yield svc
    svc.close()


@pytest.fixture
def cached_docs(services, tmp_path) -> list[tuple[str, str, str]]:
    """The four documents uploaded and cached: ``(doc_id, question, fact)`` each."""
    out = []
    for name, (text, question, fact) in DOCS.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        doc, _ = services.documents.upload("local", path)
        services.primer.cache_documents("local", [doc.doc_id])
        out.append((doc.doc_id, question, fact))
    return out


def answer(services, doc_id: str, question: str, sampling: Sampling = GREEDY) -> tuple[str, dict]:
    sid = services.sessions.create("local")
    for event in services.chat.stream_turn("local", sid, question, [doc_id], sampling, mode="cag"):
        if event.kind == "done":
            return event.text, event.data["metrics"]
    raise AssertionError("the turn ended without a done event")


def side_by_side(services, asks: list[tuple[str, str]]) -> list[tuple[str, dict]]:
    """Ask every ``(doc_id, question)`` at once, each from its own thread and session."""
    results: list = [None] * len(asks)
    start = threading.Barrier(len(asks))

    def run(i: int) -> None:
        start.wait()
        results[i] = answer(services, *asks[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def test_four_concurrent_chats_each_answer_from_their_own_document(services, cached_docs):
    peak = []
    watcher_done = threading.Event()

    def watch():  # how many sequences decode at once
        while not watcher_done.is_set():
            peak.append(services.chat.scheduler.active)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = side_by_side(services, [(doc_id, question) for doc_id, question, _ in cached_docs])
    finally:
        watcher_done.set()
        watcher.join()
    assert max(peak) == 4, "the four answers were decoded in the same batch"
    facts = [fact for _, _, fact in cached_docs]
    for (text, metrics), fact in zip(results, facts):
        assert fact.lower() in text.lower(), (fact, text)
        assert not any(other.lower() in text.lower() for other in facts if other != fact), text
        assert metrics["cache_tier"] in ("ram", "disk", "live") and metrics["reused_tokens"] >= metrics["prefix_tokens"]


def test_a_greedy_answer_is_the_same_alone_and_beside_three_others(services, cached_docs):
    asks = [(doc_id, question) for doc_id, question, _ in cached_docs]
    alone = [answer(services, *ask)[0] for ask in asks]
    together = [text for text, _ in side_by_side(services, asks)]
    assert together == alone


def test_stopping_one_answer_leaves_the_others_streaming(services, cached_docs):
    story = Sampling(max_tokens=160, temperature=0.0)
    sids = [services.sessions.create("local") for _ in cached_docs]
    gens = [services.chat.stream_turn("local", sid, "Tell me a long story about this place.", [doc_id], story,
                                      mode="cag") for sid, (doc_id, _, _) in zip(sids, cached_docs)]
    texts = ["" for _ in gens]
    firsts = [threading.Event() for _ in gens]
    ends: list = [None] * len(gens)

    def read(i: int) -> None:
        for event in gens[i]:
            if event.kind == "token":
                texts[i] += event.text
                firsts[i].set()
                if i == 0:
                    break  # the first reader stops its answer after its first token
            elif event.kind == "done":
                ends[i] = event.data["metrics"]
        if i == 0:
            gens[0].close()  # what Gradio does when the user presses stop

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(gens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(e.is_set() for e in firsts), "every answer streamed"
    assert ends[0] is None
    for metrics in ends[1:]:
        assert metrics["stop_reason"] in ("length", "eos") and metrics["completion_tokens"] > 20, metrics
    deadline = time.monotonic() + 10
    while services.chat.running(sids[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped = services.sessions.get("local", sids[0]).messages[-1]
    assert stopped.get("stopped") is True and stopped["metrics"]["completion_tokens"] < 20
    assert stopped["content"].startswith(texts[0])


def test_a_fifth_chat_waits_in_line_and_is_told_its_place(services, cached_docs):
    story = Sampling(max_tokens=60, temperature=0.0)
    sids = [services.sessions.create("local") for _ in range(5)]
    events: list[list] = [[] for _ in sids]
    doc_ids = [doc_id for doc_id, _, _ in cached_docs]

    def run(i: int) -> None:
        gen = services.chat.stream_turn("local", sids[i], "Tell me about this place.", [doc_ids[i % 4]], story,
                                        mode="cag")
        events[i] = [(e.kind, e.data.get("place")) for e in gen]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while services.chat.scheduler.active < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    fifth = threading.Thread(target=run, args=(4,))
    fifth.start()
    for t in [*threads, fifth]:
        t.join(timeout=300)
    assert ("queued", 1) in events[4], events[4]
    assert events[4][-1][0] == "done" and all(e[-1][0] == "done" for e in events)
    metrics = services.sessions.get("local", sids[4]).messages[-1]["metrics"]
    assert metrics["queue_place"] == 1 and metrics["queue_s"] > 0
