"""The ANN index: built in the background once the chunks pass its threshold (lowered here so a few real
SQuAD articles cross it), used by searches whose filter leaves that many chunks, and the results stay right:
the same top hits as the exact scan, a selective filter still exact and complete, later uploads found."""

from __future__ import annotations

import json

import pytest
from conftest import TESTDATA

from backend.documents import DocumentService, Store

SQUAD = TESTDATA / "qa" / "squad-dev-v1.1.json"
OWNER = "local"
PARAGRAPHS = 15  # of each article: enough chunks for an index, a third of the embedding time of whole articles


@pytest.fixture(scope="module")
def articles() -> list[dict]:
    return json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:7]


def upload(documents: DocumentService, folder, article: dict):
    path = folder / f"{article['title']}.txt"
    path.write_text("\n\n".join(p["context"] for p in article["paragraphs"][:PARAGRAPHS]), encoding="utf-8")
    return documents.upload(OWNER, path)[0]


@pytest.mark.slow  # embeds seven articles with the real model
def test_the_ann_index_is_built_past_its_threshold_and_search_stays_right(tmp_path, embedder, articles):
    store = Store(tmp_path / "lancedb", embedder.dim, embedder.name)
    documents = DocumentService(tmp_path / "uploads", store, embedder, max_upload_bytes=10 << 20,
                                chunk_tokens=256, overlap_tokens=40)
    rows = [upload(documents, tmp_path, a) for a in articles[:5]]
    store.vector_index.min_rows = threshold = store.count_chunks() + 1  # lowered: the sixth upload crosses it
    assert not store.vector_index.ready(store.chunks)
    rows.append(upload(documents, tmp_path, articles[5]))
    building = store.vector_index._building  # started by the write that crossed the threshold
    assert building is not None
    building.join(timeout=120)
    assert store.vector_index.ready(store.chunks) and store.vector_index.last_build_s > 0
    assert any(ix.columns == ["vector"] for ix in store.chunks.list_indices())

    assert store.vector_index.use_for(store.chunks, store._rows_in(OWNER, None))  # all documents: through the index
    assert not store.vector_index.use_for(store.chunks, store._rows_in(OWNER, [rows[2].doc_id]))  # one: exact
    questions = [(qa["question"], a["title"]) for a in articles[:6] for p in a["paragraphs"][:3] for qa in p["qas"][:1]]
    same = 0
    for question, _ in questions:
        with_index = documents.search(OWNER, question, [], 5)
        store.vector_index.min_rows = 1 << 62  # the same search, exact
        exact = documents.search(OWNER, question, [], 5)
        store.vector_index.min_rows = threshold
        same += with_index[0].idx == exact[0].idx and with_index[0].doc_id == exact[0].doc_id
        assert len(with_index) == 5
    assert same >= 0.9 * len(questions), f"top hit differs from the exact search for {len(questions) - same}"

    one = rows[2]  # a filter leaving one document's chunks: scanned exactly, never short of hits
    hits = documents.search(OWNER, "Who won the game?", [one.doc_id], 5)
    assert len(hits) == 5 and {h.doc_id for h in hits} == {one.doc_id}

    late = upload(documents, tmp_path, articles[6])  # after the index: its rows are found too
    question = articles[6]["paragraphs"][0]["qas"][0]["question"]
    assert documents.search(OWNER, question, [], 5)[0].doc_id == late.doc_id
