"""Models: the synthetic GGUF generator, picking a model, offline downloads, and starting with no model."""

from __future__ import annotations

import time

import gguf
import pytest
from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from backend.inference import HOW_TO_GET_A_MODEL, ModelDownloadError, download, pick_model


def test_synthetic_tiny_is_a_real_llama_gguf(tiny_model):
    reader = gguf.GGUFReader(tiny_model)
    fields = {name: reader.fields[name] for name in reader.fields}
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    template = bytes(fields["tokenizer.chat_template"].parts[-1]).decode()
    assert arch == "llama" and "<|im_start|>" in template
    assert bytes(fields["tokenizer.ggml.model"].parts[-1]).decode() == "gpt2"
    assert len(fields["tokenizer.ggml.merges"].data) > 1000
    assert {t.name for t in reader.tensors} >= {"token_embd.weight", "output.weight", "blk.1.ffn_down.weight"}


def test_pick_model_prefers_explicit_then_default_name(tmp_path):
    assert pick_model(None, tmp_path, "Qwen3-0.6B-Q8_0.gguf") is None
    (tmp_path / "a.gguf").write_bytes(b"x")
    (tmp_path / "Qwen3-0.6B-Q8_0.gguf").write_bytes(b"x")
    assert pick_model(None, tmp_path, "Qwen3-0.6B-Q8_0.gguf").name == "Qwen3-0.6B-Q8_0.gguf"
    assert pick_model(None, tmp_path, "other.gguf").name == "Qwen3-0.6B-Q8_0.gguf"  # sorted first
    assert pick_model(tmp_path / "x.gguf", tmp_path, "a.gguf") == tmp_path / "x.gguf"


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"},
                                 {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}])  # closed port
def test_download_offline_fails_fast_with_one_sentence(tmp_path, monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", env["HF_HUB_OFFLINE"] == "1")
    if "HF_ENDPOINT" in env:
        monkeypatch.setattr(hc, "ENDPOINT", env["HF_ENDPOINT"])
        monkeypatch.setattr(hc, "HUGGINGFACE_CO_URL_TEMPLATE", env["HF_ENDPOINT"] + "/{repo_id}/resolve/{revision}/{filename}")
    start = time.monotonic()
    with pytest.raises(ModelDownloadError, match="Could not download Qwen3-0.6B-Q8_0.gguf") as err:
        download("Qwen/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q8_0.gguf", tmp_path / "models")
    assert time.monotonic() - start < 5 and "\n" not in str(err.value), "offline fails at once"
    assert not list((tmp_path / "models").glob("*.gguf"))


@pytest.mark.slow
def test_app_starts_without_a_model_and_documents_still_work(tmp_path, embedder):
    app = launch(make_settings(tmp_path / "data", None), embedder)
    try:
        status = app.client.predict(api_name="/model_status")
        assert status["loaded"] is False and status["message"] == HOW_TO_GET_A_MODEL
        assert isinstance(status["gpu_offload_supported"], bool)
        doc = app.client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "",
                                 api_name="/upload_document")
        assert doc["pages"] == 1 and doc["tokens"] > 0
        hits = app.services.store.search("local", "crazy ones", app.services.embedder.encode(["crazy ones"])[0],
                                         [doc["doc_id"]], 3)
        assert hits and hits[0].doc_id == doc["doc_id"]
        sid = app.client.predict(api_name="/create_session")
        with pytest.raises(AppError, match="No model is loaded"):
            app.client.predict(sid, "hello", [doc["doc_id"]], api_name="/chat")
        with pytest.raises(AppError, match="No model is loaded"):
            app.client.predict(doc["doc_id"], api_name="/cache_document")
    finally:
        stop(app)


@pytest.mark.slow
def test_broken_model_file_leaves_app_running(tmp_path, embedder):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    app = launch(make_settings(tmp_path / "data", bad), embedder)
    try:
        status = app.client.predict(api_name="/model_status")
        assert status["loaded"] is False and "is not a readable GGUF file" in status["message"]
    finally:
        stop(app)


def test_unsupported_kv_settings_are_named_in_the_error(tiny_model):
    from backend.inference import Engine, EngineError, LoadParams

    engine = Engine()
    with pytest.raises(EngineError) as err:  # q8_0 KV does not suit the tiny model's head size
        engine.load(tiny_model, LoadParams(n_ctx=512, type_k="q8_0", type_v="q8_0", flash_attn=True))
    message = str(err.value)
    assert "type_k q8_0" in message and "try f16 without flash_attn" in message and "\n" not in message
    assert not engine.loaded


@pytest.mark.slow
def test_model_listing_reads_metadata_and_names_bad_files(tmp_path, tiny_model, smollm2):
    from backend.inference import list_models

    models, extra = tmp_path / "models", tmp_path / "more"
    models.mkdir()
    extra.mkdir()
    tiny = models / "tiny.gguf"
    tiny.write_bytes(tiny_model.read_bytes())
    (extra / "bench.gguf").symlink_to(smollm2)  # a real model, by another name, in the other folder
    (models / "cut.gguf").write_bytes(tiny_model.read_bytes()[:-1000])
    (models / "notes.gguf").write_bytes((TESTDATA / "md_txt" / "pandoc_MANUAL.md").read_bytes())  # mislabelled
    found = {m.path.name: m for m in list_models([models, extra, tmp_path / "missing"])}
    assert sorted(found) == ["bench.gguf", "cut.gguf", "notes.gguf", "tiny.gguf"]
    t, b = found["tiny.gguf"], found["bench.gguf"]
    assert (t.architecture, t.quantization, t.context_length, t.has_chat_template, t.error) == (
        "llama", "F32", 32768, True, "")
    assert t.size_bytes == tiny.stat().st_size and 300_000 < t.parameters < 400_000
    assert (b.architecture, b.quantization, b.context_length, b.has_chat_template) == ("llama", "Q4_1", 8192, True)
    assert 134e6 < b.parameters < 135e6, "SmolLM2-135M's tensors"
    for bad in ("cut.gguf", "notes.gguf"):
        assert found[bad].error.startswith("It is not a readable GGUF file") and found[bad].parameters == 0
