"""Load, unload and restart through the API, on the tiny synthetic model and a real Redis."""

from __future__ import annotations

import pytest
from conftest import TESTDATA
from gradio_client import handle_file
from gradio_client.exceptions import AppError


def ask(client, sid: str, question: str, doc_ids: list[str]) -> dict:
    return client.predict(sid, question, doc_ids, api_name="/chat")["metrics"]


@pytest.mark.slow
def test_restart_keeps_or_resets_caches(running_app):
    client = running_app.client
    doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", True,
                         api_name="/upload_document")
    sid = client.predict(api_name="/create_session")
    before = client.predict(api_name="/model_status")

    kept = client.predict(False, api_name="/restart_model")
    assert kept["cleared_caches"] == 0 and kept["loaded"] and kept["loaded_at"] > before["loaded_at"]
    assert [c["doc_ids"] for c in client.predict(api_name="/list_caches")] == [[doc["doc_id"]]]
    m = ask(client, sid, "Who are the crazy ones?", [doc["doc_id"]])
    assert m["cache_tier"] in ("ram", "disk") and m["reused_tokens"] == doc["cache_tokens"], m

    reset = client.predict(True, api_name="/restart_model")
    assert reset["cleared_caches"] == 1 and client.predict(api_name="/list_caches") == []
    assert reset["caches"]["ram"]["entries"] == 0, "the model's RAM entries and snapshots are gone too"
    m = ask(client, sid, "And the misfits?", [doc["doc_id"]])
    assert m["cache_tier"] == "miss" and m["reused_tokens"] == 0 and m["prefill_tokens"] == m["prompt_tokens"]


@pytest.mark.slow
def test_failed_load_keeps_the_old_model_serving(running_app, tmp_path, tiny_model):
    client = running_app.client
    sid = client.predict(api_name="/create_session")
    models = running_app.services.settings.models_dir  # load_model opens files in the model folders only
    models.mkdir(parents=True, exist_ok=True)
    truncated = models / "cut.gguf"
    truncated.write_bytes(tiny_model.read_bytes()[:-4096])
    mislabelled = models / "manual.gguf"
    mislabelled.write_bytes((TESTDATA / "md_txt" / "pandoc_MANUAL.md").read_bytes())
    attempts = [((str(truncated),), "is not a readable GGUF file"),
                ((str(mislabelled),), "is not a readable GGUF file"),
                ((str(models / "missing.gguf"),), "does not exist"),
                ((str(tmp_path / "cut.gguf"),), "load only from the model folders"),
                # passes the header checks, then llama.cpp refuses a q8_0 V cache without flash_attn
                ((str(tiny_model), 512, None, 0, 0, False, "q8_0", "q8_0"), "could not be loaded with type_k q8_0")]
    for args, expected in attempts:
        with pytest.raises(AppError, match=expected):
            client.predict(*args, api_name="/load_model")
        status = client.predict(api_name="/model_status")
        assert status["loaded"] and status["model_path"] == str(tiny_model) and status["type_k"] == "f16"
        assert ask(client, sid, "Still there?", [])["completion_tokens"] > 0


@pytest.mark.slow
def test_unload_then_load_with_settings(running_app, tiny_model):
    client = running_app.client
    sid = client.predict(api_name="/create_session")
    assert client.predict(api_name="/unload_model")["loaded"] is False
    with pytest.raises(AppError, match="No model is loaded"):
        ask(client, sid, "Anyone?", [])
    loaded = client.predict(str(tiny_model), 1_000_000, None, 256, api_name="/load_model")
    assert loaded["loaded"] and loaded["n_batch"] == 256
    assert loaded["n_ctx"] == 32768, "n_ctx is capped at the model's context length"
    assert ask(client, sid, "Back again?", [])["n_ctx"] == 32768
