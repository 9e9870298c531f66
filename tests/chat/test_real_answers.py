"""Right answers from a real model: SmolLM2-135M-Instruct (Q4_1, real weights) through the app's own
backend, greedy. The document is made of facts no model can know, so a right answer can only come
from the document: with it cached the answers contain them, without it they don't."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TESTDATA, make_settings

from backend.chat import dated
from backend.inference import Sampling
from backend.services import build_services

pytestmark = pytest.mark.slow  # a real model's answers

FACTS = """# Harbor Lighthouse of Vellmora

The Harbor Lighthouse of Vellmora was built in 1887 by the engineer Odile Marchetti.
The lighthouse is 47 meters tall and its lamp is green.
The keeper of the lighthouse is named Tobias Brennick.
The lighthouse stands on Kestrel Point, an island in the Bay of Orlin.
Every year on the first of May, the town holds the Lantern Festival at the lighthouse.
"""

QUESTIONS = {  # question -> what a right answer contains
    "Who built the Harbor Lighthouse of Vellmora?": "Odile Marchetti",
    "How tall is the lighthouse?": "47 meters",
    "Who is the keeper of the lighthouse?": "Tobias Brennick",
    "When is the Lantern Festival held?": "first of May",
}
GREEDY = Sampling(max_tokens=48, temperature=0.0)


def ask(services, question: str, doc_ids: list[str], mode: str = "auto",
        sid: str | None = None) -> tuple[str, dict, list]:
    """One question in session ``sid`` (None: a fresh one): the answer, its metrics and its sources."""
    sid = sid or services.sessions.create("local")
    for event in services.chat.stream_turn("local", sid, question, doc_ids, GREEDY, mode=mode):
        if event.kind == "done":
            return event.text, event.data["metrics"], event.data["sources"]
    raise AssertionError("the turn ended without a done event")


@pytest.fixture
def facts_doc(tmp_path) -> Path:
    path = tmp_path / "vellmora.md"
    path.write_text(FACTS, encoding="utf-8")
    return path


def settings_for(data_dir: Path, model: Path, **overrides):
    return make_settings(data_dir, model, **{"n_ctx": 2048, "max_tokens": 48, "turn_datetime": False,
                                             "n_threads": None, **overrides})


def test_cached_document_answers_with_its_facts_and_none_without(tmp_path, smollm2, embedder, facts_doc):
    services = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        assert services.engine.loaded, services.model_error
        doc, _ = services.documents.upload("local", facts_doc)
        services.primer.cache_documents("local", [doc.doc_id])
        for question, fact in QUESTIONS.items():
            with_doc, metrics, _ = ask(services, question, [doc.doc_id])
            assert fact.lower() in with_doc.lower(), (question, with_doc)
            assert metrics["mode"] == "cag" and metrics["reused_tokens"] >= metrics["prefix_tokens"] > 0
            without, _, _ = ask(services, question, [])
            assert fact.lower() not in without.lower(), (question, without)
    finally:
        services.close()


def test_with_the_date_line_on_answers_keep_their_facts_and_every_turn_reuses_the_whole_prefix(
        tmp_path, smollm2, embedder, facts_doc):
    """The app as it ships (``turn_datetime`` on): the date line goes in each question, never in the
    cached prefix, so a question asked a day later still reuses all of it."""
    services = build_services(settings_for(tmp_path / "data", smollm2, turn_datetime=True), embedder=embedder)
    first_day = 1796119200.0  # 2026-12-01 10:00 UTC
    try:
        doc, _ = services.documents.upload("local", facts_doc)
        services.primer.cache_documents("local", [doc.doc_id])
        for day, (question, fact) in enumerate(QUESTIONS.items()):
            now = first_day + day * 86_400
            services.chat.clock = lambda now=now: now
            sid = services.sessions.create("local")
            answer, metrics, _ = ask(services, question, [doc.doc_id], sid=sid)
            assert fact.lower() in answer.lower(), (question, answer)
            assert metrics["reused_tokens"] >= metrics["prefix_tokens"] > 0, metrics
            assert services.sessions.get("local", sid).messages[0]["sent"] == dated(question, now)
    finally:
        services.close()


def test_cold_answer_and_disk_restored_answer_are_the_same_tokens(tmp_path, smollm2, embedder, facts_doc):
    question = "What color is the lamp of the lighthouse?"
    first = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        doc, _ = first.documents.upload("local", facts_doc)
        cold, cold_metrics, _ = ask(first, question, [doc.doc_id])
    finally:
        first.close()
    assert cold_metrics["cache_tier"] == "miss" and cold_metrics["reused_tokens"] == 0
    again = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)  # a restart
    try:
        warm, warm_metrics, _ = ask(again, question, [doc.doc_id])
    finally:
        again.close()
    assert warm_metrics["cache_tier"] == "disk" and warm_metrics["reused_tokens"] >= warm_metrics["prefix_tokens"]
    assert warm_metrics["prefill_tokens"] < cold_metrics["prefill_tokens"]
    assert "green" in cold.lower()
    assert warm == cold


def test_rag_answer_over_a_document_longer_than_the_context_names_the_fact_and_cites_its_chunk(
        tmp_path, smollm2, embedder):
    book = (TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt").read_text(encoding="utf-8")[:150_000]
    middle = len(book) // 2
    cut = book.index("\n\n", middle)
    long_doc = tmp_path / "pride_with_a_lighthouse.txt"
    long_doc.write_text(book[:cut] + "\n\n" + FACTS.split("\n", 2)[2] + book[cut:], encoding="utf-8")
    services = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        doc, _ = services.documents.upload("local", long_doc)
        assert doc.tokens > services.engine.n_ctx
        for question, fact in QUESTIONS.items():  # the facts sit in one paragraph in the middle of a novel
            answer, metrics, sources = ask(services, question, [doc.doc_id])
            assert metrics["mode"] == "rag" and metrics["prefix_chunks"] == 1
            assert fact.lower() in answer.lower(), (question, answer)
            assert fact in sources[0]["quote"], sources  # the first citation holds the fact
    finally:
        services.close()


def test_ignore_eos_runs_an_answer_that_would_end_early_to_max_tokens(tmp_path, smollm2, embedder):
    lengths = {}
    for ignore in (False, True):
        services = build_services(settings_for(tmp_path / f"data{ignore}", smollm2, ignore_eos=ignore),
                                  embedder=embedder)
        try:
            answer, metrics, _ = ask(services, "Say hello.", [])
        finally:
            services.close()
        assert answer
        lengths[ignore] = (metrics["completion_tokens"], metrics["stop_reason"])
    assert lengths[False][0] < GREEDY.max_tokens and lengths[False][1] == "eos", lengths
    assert lengths[True] == (GREEDY.max_tokens, "length"), lengths
