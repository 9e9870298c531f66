"""The acceptance path through the real app and gradio_client: upload, cache, chat, restart."""

from __future__ import annotations

import itertools

from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import handle_file

PDF = TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf"
CHATML_TURN_TAIL = "<|im_end|>\n<|im_start|>assistant\n"  # what the tiny model's template adds after a question


def ask(app, session_id: str, question: str, doc_ids: list[str]) -> tuple[list[dict], dict]:
    """Run the streaming chat endpoint; returns every streamed value and the last one."""
    job = app.client.submit(session_id, question, doc_ids, api_name="/chat")
    outputs = list(job)
    return outputs, outputs[-1]


def test_upload_cache_chat_restart(tmp_path, tiny_model, embedder):
    data_dir = tmp_path / "data"
    app = launch(make_settings(data_dir, tiny_model), embedder)
    try:
        doc = app.client.predict(handle_file(str(PDF)), api_name="/upload_document")
        assert doc["name"] == PDF.name and doc["pages"] == 4 and doc["chars"] > 5000 and doc["tokens"] > 1000
        cached = app.client.predict(doc["doc_id"], api_name="/cache_document")
        assert cached["doc_id"] == doc["doc_id"] and cached["tier"] == "miss"
        assert cached["tokens"] > doc["tokens"] and cached["bytes"] > 0 and cached["seconds"] >= 0
        listed = app.client.predict(api_name="/list_documents")
        assert listed[0]["cached"] and listed[0]["cache_tokens"] == cached["tokens"]

        session_id = app.client.predict(api_name="/create_session")
        q1, q2 = "What is this document about?", "Which page mentions the results?"
        outputs, last = ask(app, session_id, q1, [doc["doc_id"]])
        partials = [o for o in outputs if not o["done"]]
        assert len(partials) >= 2, "text must stream in several pieces"
        assert all(a["text"] and b["text"].startswith(a["text"]) for a, b in itertools.pairwise(partials))
        m1 = last["metrics"]
        assert last["done"] and last["text"] and m1["mode"] == "cag"
        assert m1["reused_tokens"] == cached["tokens"], "the whole cached prefix is reused"
        first = app.client.predict(session_id, api_name="/get_history")["messages"][0]
        assert "sent" not in first, "a question not about time goes as typed (turn_datetime auto)"
        expected_suffix = len(app.services.engine.tokenize(q1 + CHATML_TURN_TAIL))
        assert m1["prompt_tokens"] - m1["reused_tokens"] == expected_suffix, "only the question and template are new"
        assert m1["question_tokens"] == expected_suffix
        assert m1["ttft_s"] > 0 and m1["decode_tokens_per_s"] > 0

        outputs, last = ask(app, session_id, q2, [doc["doc_id"]])
        m2 = last["metrics"]
        assert len(outputs) >= 3 and m2["mode"] == "cag" and m2["history_messages"] == 2
        assert m2["reused_tokens"] >= m1["prompt_tokens"], "the first turn stays in the context"

        history = app.client.predict(session_id, api_name="/get_history")
        assert [m["role"] for m in history["messages"]] == ["user", "assistant", "user", "assistant"]
        assert history["messages"][0]["content"] == q1 and history["messages"][2]["content"] == q2
        assert history["messages"][3]["metrics"]["prompt_tokens"] == m2["prompt_tokens"]
        # the history really is in Redis, with a TTL
        r = app.services.redis_client
        assert r.llen(f"kvc:local:session:{session_id}:messages") == 4
        assert 0 < r.ttl(f"kvc:local:session:{session_id}") <= app.services.settings.session_ttl_s
    finally:
        stop(app)

    app = launch(make_settings(data_dir, tiny_model), embedder)
    try:
        assert [d["doc_id"] for d in app.client.predict(api_name="/list_documents")] == [doc["doc_id"]]
        status = app.client.predict(api_name="/model_status")
        assert status["cached_documents"][0]["doc_ids"] == [doc["doc_id"]]
        assert status["verdict"].startswith("no calibration for this model")  # the synthetic model has none
        assert len(app.client.predict(session_id, api_name="/get_history")["messages"]) == 4
        _, last = ask(app, app.client.predict(api_name="/create_session"), q1, [doc["doc_id"]])
        m = last["metrics"]
        assert m["cache_tier"] == "disk" and m["restore_s"] > 0 and m["prefix_prefill_s"] == 0
        assert m["reused_tokens"] == cached["tokens"], "restored from disk, the document is not prefilled again"
        assert m["prompt_tokens"] - m["reused_tokens"] == m["question_tokens"] > 0, "only the question is new"
    finally:
        stop(app)
