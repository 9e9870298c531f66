"""Switching the embedding model: the documents are embedded again at the next start, with no crash on the
new vector width and nothing lost; a crash part-way keeps the old index until it is done.

The second model is a real sentence-transformers model: all-MiniLM-L6-v2 with a Dense layer that projects
its 384 dimensions to 256 (seeded), saved to a folder, so it loads offline like the first."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TESTDATA, make_settings

from backend.documents import Embedder, table_names
from backend.documents.embeddings import resolve_model
from backend.services import build_services

pytestmark = pytest.mark.slow  # builds a model, embeds documents three times

OWNER = "local"


@pytest.fixture(scope="module")
def projected(tmp_path_factory) -> Embedder:
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(0)
    base = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    dense = models.Dense(in_features=384, out_features=256, activation_function=torch.nn.Identity())
    folder = tmp_path_factory.mktemp("minilm-256")
    SentenceTransformer(modules=[*base, dense], device="cpu").save(str(folder))
    return Embedder(str(folder))


def uploaded(settings, embedder: Embedder, *files: str) -> list:
    """Upload test documents with this embedder in a data dir, then close it; returns their rows."""
    services = build_services(settings, embedder=embedder)
    try:
        return [services.documents.upload(OWNER, TESTDATA / name)[0] for name in files]
    finally:
        services.close()


def test_a_new_embedding_model_embeds_every_document_again(tmp_path, tiny_model, embedder, projected):
    data = tmp_path / "data"
    settings = make_settings(data, tiny_model)
    crazy, tables = uploaded(settings, embedder, "pdf/pypdf_crazyones.pdf", "md_txt/pandoc_tables.md")
    assert projected.dim == 256 != embedder.dim

    services = build_services(settings, embedder=projected)  # a different model, a different width
    try:
        assert services.recovery.reembedded == 2 and services.store.stale is None
        assert services.store.chunks.schema.field("vector").type.list_size == 256
        recorded = json.loads((data / "lancedb" / "embedder.json").read_text())
        assert recorded["dim"] == 256 and recorded["table"] == services.store.chunks.name
        assert {d.doc_id for d in services.documents.list(OWNER)} == {crazy.doc_id, tables.doc_id}
        hits = services.documents.search(OWNER, "the misfits, the rebels, the troublemakers", None, 1)
        assert hits[0].doc_id == crazy.doc_id
        assert services.store.chunk_counts() == {d.doc_id: d.n_chunks for d in services.documents.list(OWNER)}
        names = table_names(services.store.db)
        assert "chunks" not in names and [t for t in names if t.startswith("chunks")] == [services.store.chunks.name]
    finally:
        services.close()

    services = build_services(settings, embedder=embedder)  # and back: embedded again, never a crash
    try:
        assert services.recovery.reembedded == 2
        assert services.documents.search(OWNER, "Simple table with caption", None, 1)[0].doc_id == tables.doc_id
    finally:
        services.close()


def test_a_crash_while_embedding_again_keeps_the_old_index(tmp_path, tiny_model, embedder, projected):
    data = tmp_path / "data"
    settings = make_settings(data, tiny_model)
    [crazy] = uploaded(settings, embedder, "pdf/pypdf_crazyones.pdf")
    from backend.documents import Store

    half = Store(data / "lancedb", projected.dim, projected.name)  # a re-embedding that starts, then dies
    assert half.stale is not None and half.chunks.count_rows() == 0
    del half
    services = build_services(settings, embedder=embedder)  # the old model again: its index was never replaced
    try:
        assert services.recovery.reembedded == 0
        assert services.documents.search(OWNER, "the crazy ones", None, 1)[0].doc_id == crazy.doc_id
        assert [t for t in table_names(services.store.db) if t.startswith("chunks_")] == []  # the half table went
    finally:
        services.close()
