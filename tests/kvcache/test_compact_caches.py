"""Compact KV caches (``type_k``/``type_v`` ``q8_0`` and ``q4_0``, with ``flash_attn``) on the real SmolLM2:
a document cached under a quantized KV type is restored after a restart and gives the same greedy answer
it gave when it was computed, and its entry is smaller than an f16 one by the dtype's ratio."""

from __future__ import annotations

import pytest
from chat.test_real_answers import FACTS, ask, settings_for

from backend.inference.loader import KV_TYPE_BYTES
from backend.services import build_services

pytestmark = pytest.mark.slow  # a real model, loaded twice per KV type

QUESTION, FACT = "Who is the keeper of the lighthouse?", "Tobias Brennick"


def _cache_and_ask(data_dir, model, embedder, doc_path, kv_type: str) -> tuple[str, dict, dict, int]:
    """Upload and cache the document, ask once; returns the answer, metrics, the cache result and doc count."""
    services = build_services(settings_for(data_dir, model, type_k=kv_type, type_v=kv_type, flash_attn=True),
                              embedder=embedder)
    try:
        assert services.engine.loaded, services.model_error
        docs = services.documents.list("local")
        doc = docs[0] if docs else services.documents.upload("local", doc_path)[0]
        cached = services.primer.cache_documents("local", [doc.doc_id])
        answer, metrics, _ = ask(services, QUESTION, [doc.doc_id])
        return answer, metrics, cached, len(docs)
    finally:
        services.close()


@pytest.mark.parametrize("kv_type", ["q8_0", "q4_0"])
def test_a_quantized_cache_restores_with_the_same_greedy_answer(tmp_path, smollm2, embedder, kv_type):
    doc_path = tmp_path / "vellmora.md"
    doc_path.write_text(FACTS, encoding="utf-8")
    data = tmp_path / "data"
    first, _, computed, _ = _cache_and_ask(data, smollm2, embedder, doc_path, kv_type)
    assert computed["tier"] == "miss" and FACT in first, first
    again, metrics, restored, had = _cache_and_ask(data, smollm2, embedder, doc_path, kv_type)  # a restart
    assert had == 1 and restored["tier"] == "disk", restored  # read from the file, not computed again
    assert metrics["reused_tokens"] >= metrics["prefix_tokens"] > 0
    assert again == first, (again, first)
    assert restored["bytes"] == computed["bytes"]

    _, _, plain, _ = _cache_and_ask(tmp_path / "f16", smollm2, embedder, doc_path, "f16")
    ratio = computed["bytes"] / plain["bytes"]
    expected = KV_TYPE_BYTES[kv_type] / KV_TYPE_BYTES["f16"]  # K and V both quantized
    assert abs(ratio - expected) < 0.05, (ratio, expected)
