"""Deleted means deleted (issue 44), on ``python app.py`` as a user runs it: a document and a chat holding a unique
marker are deleted, the clean-up runs (``KVC_PURGE_DELAY_S=0``: at once), and the marker is in no file under the
data dir, Gradio's temp folder (which the app keeps there) included; an unexpected error is logged with its
traceback under the id the user is given."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from apprun import start_app, stop
from conftest import TESTDATA
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

MARKER = "zqx" + "vel7731" + "marker"  # split so this file itself never matches a search of the data dir


def holding(folder: Path, needle: bytes) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``needle``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


@pytest.mark.slow
def test_a_deleted_document_and_chat_leave_no_bytes_behind(tmp_path, tiny_model):
    data = tmp_path / "data"
    notes = tmp_path / "field-notes.txt"
    text = (TESTDATA / "md_txt" / "pandoc_testsuite.md").read_text(encoding="utf-8")[:6000]
    notes.write_text(f"The code word is {MARKER}.\n\n{text}\n\nRemember {MARKER} at the gate.\n", encoding="utf-8")
    proc, url = start_app(tmp_path, {"KVC_DATA_DIR": str(data), "KVC_MODEL_PATH": str(tiny_model),
                                     "KVC_PURGE_DELAY_S": "0", "KVC_N_CTX": "16384", "KVC_CAG_MAX_TOKENS": "1048576"})
    try:
        client = Client(url, verbose=False)
        doc = client.predict(handle_file(str(notes)), "", True, api_name="/upload_document")
        assert doc["cached"]
        sid = client.predict(api_name="/create_session")
        *_, answer = client.submit(sid, f"What is {MARKER} for?", [doc["doc_id"]], api_name="/chat")
        assert answer["done"]
        client.predict(sid, api_name="/get_history")
        needle = MARKER.encode()
        found = holding(data, needle)
        assert any(f.startswith("lancedb") for f in found) and any(f.startswith("uploads") for f in found), found
        assert any(f.startswith("redis") for f in found), found  # the question, in the append-only file
        deadline = time.monotonic() + 10  # removed KVC_PURGE_DELAY_S (0 here) after its reading, by a timer thread
        while holding(data / "tmp", needle) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not holding(data / "tmp", needle), "Gradio's copy of the upload outlived its ingestion"
        deleted_at = time.time()
        client.predict(sid, api_name="/delete_session")
        client.predict(doc["doc_id"], api_name="/delete_document")
        deadline = time.monotonic() + 90
        while (found := holding(data, needle)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not found, f"the marker is still in {found}"
        redis_files = [p for p in (data / "redis").iterdir() if p.suffix in (".aof", ".rdb")]
        assert redis_files and all(p.stat().st_mtime >= deleted_at for p in redis_files)  # rewritten since
        assert client.predict(api_name="/list_documents") == [] and client.predict(api_name="/list_sessions") == []

        # an error nobody turned into a sentence: the chunks' data files removed under the running app
        client.predict(handle_file(str(TESTDATA / "md_txt" / "pandoc_tables.md")), "", False, api_name="/upload_document")
        shutil.rmtree(data / "lancedb" / "chunks.lance" / "data")
        with pytest.raises(AppError) as err:
            client.predict("table columns", [], 3, api_name="/search_documents")
        error_id = re.search(r"error ([0-9a-f]{8})", str(err.value))
        assert error_id, str(err.value)
        assert "lance" not in str(err.value).lower() and str(data) not in str(err.value)
    finally:
        stop(proc)
    log = (data / "logs" / "app.log").read_text(encoding="utf-8")
    at = log.index(f"unhandled error {error_id.group(1)}")
    assert "Traceback (most recent call last)" in log[at:at + 3000]
