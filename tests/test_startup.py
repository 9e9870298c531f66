"""Serve first: the first screen is built without LanceDB, torch, sentence-transformers or OCR, a question on a
cached document is answered before the embedding model is loaded, and what the first screen does not need loads
behind it (or on first use), each part's state in ``model_status``."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from apprun import start_app, stop
from conftest import ROOT, TESTDATA, make_settings
from gradio_client import Client, handle_file

from backend.services import build_services

HEAVY = ("lancedb", "torch", "sentence_transformers", "transformers", "rapidocr", "onnxruntime")

SERVING_PATH = """
import json, sys
import app
from backend.config import Settings
from backend.services import build_services

heavy = {heavy!r}
loaded = lambda: [m for m in heavy if m in sys.modules]
seen = {{"import app": loaded()}}
settings = Settings(data_dir={data!r}, models_dir={data!r}, model_path={model!r}, auto_download=False, n_threads=1)
services = build_services(settings, serve_first=True)
app.build_app(settings, services)
seen["first screen"] = loaded()
seen["states"] = services.readiness()
services.documents.open()
seen["index open"] = loaded()
services.embedder.load()
seen["embedder"] = loaded()
seen["states after"] = services.readiness()
services.close()
print(json.dumps(seen))
"""


def test_the_first_screen_is_built_without_the_heavy_libraries(tmp_path, tiny_model):
    """What ``python -X importtime app.py`` showed taking most of the start (LanceDB 3.5 s, sentence-transformers
    with torch 10 s on 2 cores) is imported only when the index opens and the embedder loads."""
    script = SERVING_PATH.format(heavy=HEAVY, data=str(tmp_path / "data"), model=str(tiny_model))
    out = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["import app"] == [] and seen["first screen"] == []
    assert seen["states"] == {"documents": "waiting", "embedder": "waiting", "ocr": "waiting"}
    assert "lancedb" in seen["index open"] and "torch" not in seen["index open"]
    assert {"torch", "sentence_transformers"} <= set(seen["embedder"])
    assert seen["states after"]["documents"].startswith("ready") and seen["states after"]["embedder"].startswith("ready")


def _cached_document(data, tiny_model, embedder) -> str:
    """A data dir with one text document uploaded and its KV cache saved; returns its id."""
    services = build_services(make_settings(data, tiny_model), embedder=embedder)
    try:
        row, _ = services.documents.upload("local", TESTDATA / "md_txt" / "chardet_utf-8-sig__ude_4.txt")
        assert services.primer.cache_if_possible("local", row.doc_id)
        return row.doc_id
    finally:
        services.close()


def _env(data, tiny_model, warm: bool) -> dict[str, str]:
    return {"KVC_DATA_DIR": str(data), "KVC_MODELS_DIR": str(data / "no-models"), "KVC_MODEL_PATH": str(tiny_model),
            "KVC_N_CTX": "16384", "KVC_CAG_MAX_TOKENS": str(1 << 20), "KVC_MAX_TOKENS": "8", "KVC_TEMPERATURE": "0",
            "KVC_WARM_UP": "true" if warm else "false"}


@pytest.mark.slow
def test_a_cached_document_is_answered_before_the_embedder_loads(tmp_path, tiny_model, embedder):
    data = tmp_path / "data"
    doc_id = _cached_document(data, tiny_model, embedder)
    proc, url = start_app(tmp_path, _env(data, tiny_model, warm=False))
    try:
        client = Client(url, verbose=False)
        session = client.predict(api_name="/create_session")
        *_, last = client.submit(session, "What is this text about?", [doc_id], "cag", api_name="/chat")
        assert last["done"] and last["metrics"]["mode"] == "cag"
        assert last["metrics"]["reused_tokens"] > 0 and last["metrics"]["cache_tier"] == "disk", "restored, not read"
        parts = client.predict(api_name="/model_status")["parts"]
        # The answer was saved before the memory index's writer thread started loading the embedder (importing
        # torch and sentence-transformers alone takes seconds), so it had not waited for it.
        assert parts["embedder"] in ("waiting", "loading"), "the whole-document answer never needed the embedder"
        assert parts["documents"].startswith("ready") and parts["ocr"] == "waiting"
        doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", False,
                             api_name="/upload_document")  # needs the embedder: it loads now, no error
        assert doc["chunks"] >= 1
        assert client.predict(api_name="/model_status")["parts"]["embedder"].startswith("ready")
        hits = client.predict("misfits rebels troublemakers", [doc["doc_id"]], 1, api_name="/search_documents")
        assert hits and hits[0]["doc_id"] == doc["doc_id"]
    finally:
        stop(proc)


@pytest.mark.slow
def test_the_warm_up_loads_every_part_behind_the_first_screen(tmp_path, tiny_model):
    data = tmp_path / "data"
    proc, url = start_app(tmp_path, _env(data, tiny_model, warm=True))
    try:
        client = Client(url, verbose=False)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            parts = client.predict(api_name="/model_status")["parts"]
            if all(state.startswith("ready") for state in parts.values()):
                break
            assert not any(state.startswith("failed") for state in parts.values()), parts
            time.sleep(1)
        assert set(parts) == {"documents", "embedder", "ocr"} and all(s.startswith("ready") for s in parts.values())
    finally:
        stop(proc)
    assert "warm-up done" in (tmp_path / "app.log").read_text()
