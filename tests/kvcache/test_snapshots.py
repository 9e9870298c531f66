"""Session snapshots and prefetch, on the real tiny model, Redis, LanceDB and documents."""

from __future__ import annotations

import pytest
from conftest import TESTDATA, make_settings

from backend.inference import Sampling, StreamStats
from backend.services import build_services


@pytest.fixture
def services(tmp_path, tiny_model, embedder):
    svc = build_services(make_settings(tmp_path / "data", tiny_model, max_tokens=24), embedder=embedder)
    yield svc
    svc.close()


def ask(svc, session_id: str, question: str, doc_ids: list[str]) -> tuple[str, dict]:
    for event in svc.chat.stream_turn("local", session_id, question, doc_ids):
        if event.kind == "done":
            return event.text, event.data["metrics"]
    raise AssertionError("the turn ended without a done event")


def in_context(metrics: dict) -> int:
    """Tokens a finished turn leaves in the context: its prompt and every generated token that was
    evaluated (a token sampled when ``max_tokens`` ran out is never evaluated)."""
    return metrics["prompt_tokens"] + metrics["completion_tokens"] - (metrics["stop_reason"] == "length")


@pytest.mark.parametrize("n_seq_max", [1, 2])
@pytest.mark.slow
def test_two_sessions_alternating_reuse_their_whole_previous_context(tmp_path, tiny_model, embedder, n_seq_max):
    """With one sequence the sessions take turns in it and restore their snapshots; with two each
    keeps its own sequence, live."""
    services = build_services(make_settings(tmp_path / "data", tiny_model, max_tokens=24, n_seq_max=n_seq_max),
                              embedder=embedder)
    try:
        alternate(services, "ram" if n_seq_max == 1 else "live")
    finally:
        services.close()


def alternate(services, tier: str) -> None:
    pdf, _ = services.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    docx, _ = services.documents.upload("local", TESTDATA / "docx" / "pandoc_tables.docx")
    sessions = {services.sessions.create("local"): [pdf.doc_id], services.sessions.create("local"): [docx.doc_id]}
    previous: dict[str, dict] = {}
    for round_ in range(3):
        for sid, docs in sessions.items():
            _, m = ask(services, sid, f"What does part {round_} say?", docs)
            if round_ == 0:
                assert m["snapshot_tokens"] == 0 and m["history_tokens"] == 0
            else:
                whole = in_context(previous[sid])
                assert m["cache_tier"] == tier and m["snapshot_tokens"] == (whole if tier == "ram" else 0), m
                assert m["reused_tokens"] == whole, "the whole previous context (prefix, history, answer) is reused"
                assert m["prefill_tokens"] == m["prompt_tokens"] - whole
                assert m["history_messages"] == 2 * round_
            previous[sid] = m
    for sid in sessions:
        assert len(services.sessions.get("local", sid).messages) == 6


def test_snapshot_restore_gives_the_cold_greedy_output(services):
    pdf, _ = services.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    a, b = services.sessions.create("local"), services.sessions.create("local")
    ask(services, a, "Who are the crazy ones?", [pdf.doc_id])
    ask(services, b, "Something else entirely.", [])  # the context now holds b, not a
    turn = services.chat.prepare_turn("local", a, "And the misfits?", [pdf.doc_id])
    assert turn.snapshot is not None and turn.plan.prompt.spliced_tokens == turn.snapshot.n_tokens
    engine, greedy = services.engine, Sampling(max_tokens=24, temperature=0.0)
    with engine.lock:
        restored = services.chat.snapshots.restore(engine, turn.snapshot, turn.plan.prompt.prefix_tokens,
                                                   turn.plan.prompt.tokens)
        assert restored is not None and restored.snapshot_tokens == turn.snapshot.n_tokens
        warm = "".join(engine.stream(turn.plan.prompt.tokens, greedy, StreamStats()))
        engine.clear_context()
        cold_stats = StreamStats()
        cold = "".join(engine.stream(turn.plan.prompt.tokens, greedy, cold_stats))
    assert cold_stats.reused_tokens == 0 and warm == cold and warm


@pytest.mark.slow
def test_without_ram_the_session_falls_back_to_the_document_prefix(tmp_path, tiny_model, embedder):
    svc = build_services(make_settings(tmp_path / "data", tiny_model, max_tokens=24, kv_ram_budget_mb=0),
                         embedder=embedder)
    try:
        pdf, _ = svc.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
        a, b = svc.sessions.create("local"), svc.sessions.create("local")
        ask(svc, a, "Who are the crazy ones?", [pdf.doc_id])
        ask(svc, b, "Something else entirely.", [])
        _, m = ask(svc, a, "And the misfits?", [pdf.doc_id])
        assert m["cache_tier"] == "disk" and m["snapshot_tokens"] == 0
        assert m["reused_tokens"] == m["prefix_tokens"], "the history is evaluated again, the document is not"
    finally:
        svc.close()


@pytest.fixture
def long_doc(services, tmp_path):
    """About 12,900 tokens of Pride and Prejudice: long enough to prefill for over a second."""
    path = tmp_path / "pride_opening.txt"
    path.write_text((TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt").read_text(encoding="utf-8")[:30000],
                    encoding="utf-8")
    return services.documents.upload("local", path)[0]


@pytest.mark.slow
def test_prefetch_restores_a_cached_prefix_so_the_question_is_all_that_is_evaluated(services):
    pdf, _ = services.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    services.primer.cache_documents("local", [pdf.doc_id])
    services.engine.clear_context()
    sid = services.sessions.create("local")
    job = services.primer.prefetch("local", sid, [pdf.doc_id])
    assert job.wait(30) and job.outcome == "done" and job.result.tier in ("ram", "disk")
    _, m = ask(services, sid, "Who are the crazy ones?", [pdf.doc_id])
    assert m["cache_tier"] == "live" and m["reused_tokens"] == m["prefix_tokens"]
    assert m["prefill_tokens"] == m["question_tokens"]


@pytest.mark.slow
def test_a_question_mid_prefetch_for_the_same_session_waits_for_it(services, long_doc):
    sid = services.sessions.create("local")
    job = services.primer.prefetch("local", sid, [long_doc.doc_id])
    assert job.started.wait(10)
    _, m = ask(services, sid, "Who is Mr. Bingley?", [long_doc.doc_id])
    assert job.outcome == "done" and job.result.tier == "miss"
    assert m["cache_tier"] == "live" and m["reused_tokens"] == m["prefix_tokens"] > 12000
    assert services.caches.cached("local").get((long_doc.doc_id,)) is not None, "the prefetch saved the prefix"


@pytest.mark.slow
def test_a_question_for_another_session_preempts_the_prefetch(services, long_doc):
    mine, other = services.sessions.create("local"), services.sessions.create("local")
    job = services.primer.prefetch("local", mine, [long_doc.doc_id])
    assert job.started.wait(10)
    _, m = ask(services, other, "Hello there.", [])
    assert job.wait(10) and job.outcome == "preempted"
    assert m["mode"] == "chat" and m["completion_tokens"] > 0
    assert services.caches.cached("local").get((long_doc.doc_id,)) is None, "a preempted prefill saves nothing"
    again = services.primer.prefetch("local", mine, [long_doc.doc_id])  # and a later prefetch still works
    assert again.wait(60) and again.outcome == "done"
    assert services.caches.cached("local").get((long_doc.doc_id,)) is not None


@pytest.mark.slow
def test_priming_in_a_sequence_that_holds_a_chat_saves_the_prefix_alone(services):
    pdf, _ = services.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    ask(services, services.sessions.create("local"), "Who are the crazy ones?", [pdf.doc_id])
    saved = [e for e in services.kv_store.entries() if list(e.doc_ids) == [pdf.doc_id]]
    assert len(saved) == 1, "the turn saved the document prefix when its sequence reached the prefix's end"
    services.kv_store.delete(saved[0].key)  # the file is gone; a sequence still holds prefix, question and answer
    primed = services.primer.cache_documents("local", [pdf.doc_id])
    assert primed["tier"] == "miss" and primed["bytes"] == saved[0].state_bytes, (primed, saved[0].state_bytes)
