"""RAG over a document longer than ``n_ctx``, with the real SmolLM2 model: the best chunk is the cached
prefix, its KV state is saved like a document's, restored on later questions and after a restart, and a
corrupt one is recomputed. The document's facts are made up, so a right answer can only come from the
retrieved chunk."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_settings

from backend.inference import Sampling
from backend.services import build_services

pytestmark = pytest.mark.slow  # a real model's answers

TOWNS = ["Vellmora", "Ostrand", "Kelvaro", "Prynwick", "Dulmarsh", "Ashcombe", "Tarnholt", "Quillan",
         "Brackmere", "Sorrowby", "Elmstead", "Varrow", "Corvinth", "Halsworth", "Mirebury", "Fenwold"]
ENGINEERS = ["Odile Marchetti", "Henrik Solvang", "Amara Okonkwo", "Tomasz Wrobel", "Ines Carvalho",
             "Lachlan Byrne", "Yuki Tanabe", "Farid Haddad", "Greta Lindqvist", "Mateo Rinaldi",
             "Sunniva Berg", "Kwame Mensah", "Clara Dufresne", "Oskar Niemi", "Leila Farahani", "Bram Visser"]
GREEDY = Sampling(max_tokens=48, temperature=0.0)


def paragraph(i: int) -> str:
    town, engineer = TOWNS[i], ENGINEERS[i]
    return (f"The lighthouse of {town} was built in {1850 + 7 * i} by the engineer {engineer}. "
            f"It stands {30 + i} meters tall on the rocks north of the {town} harbour, and ships have used its "
            f"light to find the harbour entrance for many years. The town of {town} holds a fair at the "
            f"lighthouse every summer, when visitors climb its stairs to see the view over the bay.")


@pytest.fixture
def long_doc(tmp_path) -> Path:
    path = tmp_path / "lighthouses.md"
    path.write_text("# Lighthouses of the northern coast\n\n" + "\n\n".join(paragraph(i) for i in range(16)),
                    encoding="utf-8")
    return path


def settings_for(data_dir: Path, model: Path):
    return make_settings(data_dir, model, n_ctx=1024, max_tokens=48, turn_datetime=False, n_threads=None)


def ask(services, question: str, doc_ids: list[str]) -> tuple[str, dict, list]:
    """One question in a fresh session: the answer, its metrics and the chunks it read."""
    sid = services.sessions.create("local")
    for event in services.chat.stream_turn("local", sid, question, doc_ids, GREEDY):
        if event.kind == "done":
            return event.text, event.data["metrics"], event.data["retrieved"]
    raise AssertionError("the turn ended without a done event")


def test_cached_chunks_answer_from_ram_and_after_a_restart_from_disk(tmp_path, smollm2, embedder, long_doc):
    question, fact = "Who built the lighthouse of Kelvaro?", "Amara Okonkwo"
    services = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        doc, _ = services.documents.upload("local", long_doc)
        assert doc.tokens > services.engine.n_ctx  # too long to cache whole: questions use retrieval
        primed = services.primer.cache_documents("local", [doc.doc_id])
        assert primed["tier"] == "chunks" and primed["chunks"] == primed["computed"] == doc.n_chunks >= 16
        listed = services.caches.list("local")
        assert len(listed) == doc.n_chunks and all(c.kind == "chunk" and c.bytes > 0 for c in listed)
        assert all(c.documents[0].startswith("lighthouses.md · chunk ") for c in listed)
        assert services.caches.cached("local") == {}  # chunk prefixes do not make the document "cached"
        answer, metrics, sources = ask(services, question, [doc.doc_id])
        assert fact in answer, answer
        assert metrics["mode"] == "rag" and metrics["prefix_chunks"] == 1 and metrics["cache_tier"] == "ram"
        assert metrics["reused_tokens"] >= metrics["prefix_tokens"] > 0
        assert metrics["prefill_tokens"] < 40  # only the question and the turn's template tokens
        assert len(sources) == 1 and "Kelvaro" in sources[0]["text"]
        again = services.primer.cache_documents("local", [doc.doc_id])
        assert again["computed"] == 0  # every chunk was already saved
    finally:
        services.close()
    restarted = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        warm, warm_metrics, _ = ask(restarted, question, [doc.doc_id])
        assert warm_metrics["cache_tier"] == "disk" and warm_metrics["reused_tokens"] >= warm_metrics["prefix_tokens"]
        assert warm == answer  # restored state, same greedy answer
        other, _, _ = ask(restarted, "Who built the lighthouse of Tarnholt?", [doc.doc_id])
        assert "Yuki Tanabe" in other, other
    finally:
        restarted.close()


def test_a_chunk_is_cached_on_first_use_and_a_corrupt_one_is_recomputed(tmp_path, smollm2, embedder, long_doc):
    question, fact = "Who built the lighthouse of Brackmere?", "Greta Lindqvist"
    services = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        doc, _ = services.documents.upload("local", long_doc)
        first, first_metrics, _ = ask(services, question, [doc.doc_id])
        assert fact in first, first
        assert first_metrics["cache_tier"] == "miss" and first_metrics["reused_tokens"] == 0
        (entry,) = services.kv_store.entries()
        assert entry.doc_ids == (doc.doc_id,) and len(entry.chunks) == 1
    finally:
        services.close()
    payload = tmp_path / "data" / "kvcache" / f"{entry.key}.kv"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    restarted = build_services(settings_for(tmp_path / "data", smollm2), embedder=embedder)
    try:
        answer, metrics, _ = ask(restarted, question, [doc.doc_id])
        assert metrics["cache_tier"] == "miss" and answer == first  # discarded, recomputed, same answer
        (again,) = restarted.kv_store.entries()
        assert again.key == entry.key and restarted.kv_store.load(again.key, again.fingerprint,
                                                                  restarted.kv_store.tokens(again.key)) is not None
    finally:
        restarted.close()
