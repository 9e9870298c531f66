"""Documents too long for the context go through hybrid retrieval (RAG) with sources."""

from __future__ import annotations

import pytest
from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import handle_file
from gradio_client.exceptions import AppError


@pytest.mark.slow
def test_long_document_uses_top_k_chunks_in_the_user_turn(tmp_path, tiny_model, embedder):
    settings = make_settings(tmp_path / "data", tiny_model, n_ctx=2048, retrieval_top_k=3, rag_prefix_chunks=0)
    app = launch(settings, embedder)
    try:
        doc = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf")), "",
                                 api_name="/upload_document")
        assert doc["tokens"] > 2048
        sid = app.client.predict(api_name="/create_session")
        question = "How does trace-based compilation handle type specialization of loops?"
        last = app.client.predict(sid, question, [doc["doc_id"]], api_name="/chat")
        assert last["metrics"]["mode"] == "rag" and last["metrics"]["prompt_tokens"] <= 2048
        assert last["metrics"]["retrieved_tokens"] > 0 and last["metrics"]["prefix_chunks"] == 0
        read = last["retrieved"]  # the chunks the answer read; its citations are in "sources"
        assert 1 <= len(read) <= 3 and all(s["doc_id"] == doc["doc_id"] and s["page"] >= 1 for s in read)
        assert any("trace" in s["text"].lower() for s in read)
        stored = app.client.predict(sid, api_name="/get_history")["messages"][1]
        assert stored["retrieved"] == read and stored["sources"] == last["sources"]
        assert stored["grounding"] == last["grounding"] in ("supported", "partial", "not_found")
        # with chunks kept out of the prefix, caching a document that cannot fit says so in one sentence
        with pytest.raises(AppError, match="use retrieval instead"):
            app.client.predict(doc["doc_id"], api_name="/cache_document")
    finally:
        stop(app)


@pytest.mark.slow
def test_long_document_caches_its_chunks_and_questions_restore_the_best_one(tmp_path, tiny_model, embedder):
    app = launch(make_settings(tmp_path / "data", tiny_model, n_ctx=2048), embedder)
    try:
        doc = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf")), "",
                                 api_name="/upload_document")
        primed = app.client.predict(doc["doc_id"], api_name="/cache_document")
        assert primed["tier"] == "chunks" and primed["chunks"] == primed["computed"] == doc["chunks"]
        caches = app.client.predict(api_name="/list_caches")
        assert len(caches) == doc["chunks"] and all(len(c["chunks"]) == 1 and c["bytes"] > 0 for c in caches)
        sid = app.client.predict(api_name="/create_session")
        last = app.client.predict(sid, "How does trace-based compilation handle type specialization of loops?",
                                  [doc["doc_id"]], api_name="/chat")
        m = last["metrics"]
        assert m["mode"] == "rag" and m["prefix_chunks"] == 1 and m["cache_tier"] == "ram"
        assert m["reused_tokens"] >= m["prefix_tokens"] > 0 and m["retrieved_tokens"] == 0
        (source,) = last["retrieved"]
        assert "trace" in source["text"].lower()
        assert any(c["chunks"] == [source["idx"]] for c in caches)
    finally:
        stop(app)


@pytest.mark.slow
def test_search_is_filtered_to_selected_documents(tmp_path, tiny_model, embedder):
    app = launch(make_settings(tmp_path / "data", tiny_model), embedder)
    try:
        crazy = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "",
                                   api_name="/upload_document")
        latex = app.client.predict(handle_file(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")), "",
                                   api_name="/upload_document")
        svc = app.services
        query = "Here's to the crazy ones, the misfits, the rebels"
        vector = svc.embedder.encode([query])[0]
        both = svc.store.search("local", query, vector, [crazy["doc_id"], latex["doc_id"]], 3)
        assert both[0].doc_id == crazy["doc_id"] and both[0].score >= both[-1].score
        only_latex = svc.store.search("local", query, vector, [latex["doc_id"]], 3)
        assert only_latex and all(h.doc_id == latex["doc_id"] for h in only_latex)
        assert svc.store.search("other-owner", query, vector, [crazy["doc_id"]], 3) == []
    finally:
        stop(app)


@pytest.mark.slow
def test_forced_modes_are_obeyed_and_reported(tmp_path, tiny_model, embedder):
    app = launch(make_settings(tmp_path / "data", tiny_model, n_ctx=2048, retrieval_top_k=2), embedder)
    try:
        small = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "",
                                   api_name="/upload_document")
        big = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf")), "",
                                 api_name="/upload_document")
        sid = app.client.predict(api_name="/create_session")
        question = "Who are the crazy ones?"
        auto = app.client.predict(sid, question, [small["doc_id"]], api_name="/chat")  # mode defaults to auto
        assert auto["metrics"]["mode"] == "cag" and auto["retrieved"] == []
        rag = app.client.predict(sid, question, [small["doc_id"]], "rag", api_name="/chat")
        assert rag["metrics"]["mode"] == "rag" and rag["retrieved"][0]["doc_id"] == small["doc_id"]
        assert rag["metrics"]["mode_reason"] == "rag: chosen by the user"
        cag = app.client.predict(sid, question, [small["doc_id"]], "cag", api_name="/chat")
        assert cag["metrics"]["mode"] == "cag"
        with pytest.raises(AppError, match="do not fit the context window"):
            app.client.predict(sid, question, [big["doc_id"]], "cag", api_name="/chat")
        with pytest.raises(AppError, match="`mode` must be one of"):
            app.client.predict(sid, question, [small["doc_id"]], "fast", api_name="/chat")
        modes = [m["metrics"]["mode"] for m in app.client.predict(sid, api_name="/get_history")["messages"]
                 if m["role"] == "assistant"]
        assert modes == ["cag", "rag", "cag"]  # failed turns left the history alone
    finally:
        stop(app)
