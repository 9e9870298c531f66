"""Switching the chat model keeps every other model's KV caches: each entry is keyed by its model's fingerprint."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT, TESTDATA, make_settings

from backend.services import build_services

OWNER = "local"


@pytest.mark.slow  # loads three models and caches a document with two
def test_switching_the_chat_model_keeps_the_other_models_caches(tmp_path, tiny_model, embedder):
    sys.path.insert(0, str(ROOT / "models"))
    from make_synthetic import write_model

    settings = make_settings(tmp_path / "data", tiny_model)
    other = write_model(settings.models_dir / "other.gguf", "tiny", seed=1)  # same shapes, other weights
    services = build_services(settings, embedder=embedder)
    try:
        doc, _ = services.documents.upload(OWNER, TESTDATA / "pdf" / "pypdf_crazyones.pdf")
        first = services.primer.cache_documents(OWNER, [doc.doc_id])
        services.models.load(other)
        second = services.primer.cache_documents(OWNER, [doc.doc_id])
        assert first["tier"] == second["tier"] == "miss"  # each model reads the document itself
        models = {e.fingerprint["model_sha256"] for e in services.kv_store.entries()}
        assert len(models) == 2, "the first model's cache stays when the second is loaded"
        services.models.load(tiny_model)
        assert services.primer.cache_documents(OWNER, [doc.doc_id])["tier"] == "disk"  # found, not computed
        assert len(services.kv_store.entries()) == 2
    finally:
        services.close()
