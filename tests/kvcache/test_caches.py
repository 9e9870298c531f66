"""KV-cache entries through the API: list what each holds, delete one, and the document stays."""

from __future__ import annotations

import pytest
from conftest import TESTDATA
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from components.caches import rows as cache_rows


@pytest.mark.slow
def test_list_and_delete_caches(running_app):
    client = running_app.client
    doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", api_name="/upload_document")
    assert client.predict(api_name="/list_caches") == []
    primed = client.predict(doc["doc_id"], api_name="/cache_document")
    (entry,) = client.predict(api_name="/list_caches")
    assert entry["documents"] == ["pypdf_crazyones.pdf"] and entry["doc_ids"] == [doc["doc_id"]]
    assert entry["tokens"] == primed["tokens"] and entry["bytes"] == primed["bytes"] > 0
    assert entry["tier"] == "ram" and entry["usable"] is True  # just primed: held in RAM as well as on disk
    assert entry["last_used_at"] >= entry["created_at"] > 0
    kv_dir = running_app.services.settings.data_dir / "kvcache"
    assert (kv_dir / f"{entry['key']}.kv").exists()
    table, choices, total = cache_rows(running_app.services, entry["owner"], query="Crazyones document")  # the filter box
    assert total == 1 and [r[0] for r in table] == ["pypdf_crazyones.pdf"] and choices[0][1] == entry["key"]
    assert cache_rows(running_app.services, entry["owner"], query="chunk")[:2] == ([], [])

    pinned = client.predict(entry["key"], True, api_name="/pin_cache")
    assert pinned["pinned"] is True and " 0 B pinned" not in pinned["budget"]
    assert "tokens of this model's KV state" in pinned["budget"]
    assert client.predict(api_name="/list_caches")[0]["pinned"] is True
    assert client.predict(entry["key"], False, api_name="/pin_cache")["pinned"] is False

    gone = client.predict(entry["key"], api_name="/delete_cache")
    assert gone == {"key": entry["key"], "deleted": True, "bytes": entry["bytes"]}
    assert client.predict(api_name="/list_caches") == [] and not list(kv_dir.glob(f"{entry['key']}.*"))
    assert [d["doc_id"] for d in client.predict(api_name="/list_documents")] == [doc["doc_id"]]
    assert client.predict(api_name="/list_documents")[0]["cached"] is False
    with pytest.raises(AppError, match="does not exist"):
        client.predict(entry["key"], api_name="/delete_cache")
    # the prefix still in the model's context keeps answering; priming again saves a new file
    sid = client.predict(api_name="/create_session")
    last = client.predict(sid, "What is this about?", [doc["doc_id"]], api_name="/chat")
    assert last["metrics"]["cache_tier"] == "live" and last["metrics"]["reused_tokens"] >= primed["tokens"]
    client.predict(doc["doc_id"], api_name="/cache_document")
    assert [c["doc_ids"] for c in client.predict(api_name="/list_caches")] == [[doc["doc_id"]]]


@pytest.mark.slow
def test_upload_can_prime_the_cache_at_once(running_app):
    client = running_app.client
    doc = client.predict(handle_file(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")), "", True,
                         api_name="/upload_document")
    assert doc["cached"] is True and doc["cache_tokens"] > doc["tokens"] * 0.5
    (entry,) = client.predict(api_name="/list_caches")
    assert entry["doc_ids"] == [doc["doc_id"]]
    plain = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", api_name="/upload_document")
    assert plain["cached"] is False, "priming on upload is off unless asked for (prime_on_upload)"


@pytest.mark.slow
def test_prefetch_endpoint_then_chat_evaluates_only_the_question(running_app):
    client = running_app.client
    doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", True,
                         api_name="/upload_document")
    other, mine = client.predict(api_name="/create_session"), client.predict(api_name="/create_session")
    client.predict(other, "Hello.", [], api_name="/chat")  # the context now holds another prompt
    got = client.predict(mine, [doc["doc_id"]], "auto", api_name="/prefetch")
    assert got == {"outcome": "done", "tier": "ram", "tokens": doc["cache_tokens"]}
    m = client.predict(mine, "Who are the crazy ones?", [doc["doc_id"]], api_name="/chat")["metrics"]
    assert m["cache_tier"] == "live" and m["reused_tokens"] == doc["cache_tokens"]
    assert m["prefill_tokens"] == m["question_tokens"]
    assert m["n_ctx"] == m["prefix_tokens"] + m["history_tokens"] + m["question_tokens"] + (
        m["n_ctx"] - m["prompt_tokens"]), "the split adds up to the prompt"
