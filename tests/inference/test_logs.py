"""Per-run logs: llama.cpp's own log lines reach the run's file through its log callback, the API
filters them by level, a restart starts a new run, and user text never reaches the log."""

from __future__ import annotations

import logging

import pytest
from conftest import TESTDATA
from gradio_client import handle_file
from gradio_client.exceptions import AppError


@pytest.mark.slow
def test_model_runs_write_llama_cpp_logs_filtered_by_level(running_app):
    client, root = running_app.client, logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)  # as verbose as it gets: still no user text
    try:
        (first,) = client.predict(api_name="/list_log_runs")
        assert first["current"] and first["run_id"].endswith("tiny") and first["size_bytes"] > 0
        info = client.predict(first["run_id"], "INFO", 1000, api_name="/get_logs")["lines"]
        assert any(" INFO llama.cpp: llama_model_loader: loaded meta data" in line for line in info)
        assert not any(" DEBUG " in line for line in info)
        warnings = client.predict(first["run_id"], "WARNING", 1000, api_name="/get_logs")["lines"]
        assert len(warnings) < len(info) and all(" INFO " not in line for line in warnings)
        assert len(client.predict("", "DEBUG", 5, api_name="/get_logs")["lines"]) == 5

        marker = "zebra-quartz-4711"
        doc = client.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "",
                             api_name="/upload_document")
        sid = client.predict(api_name="/create_session")
        client.predict(sid, f"What does {marker} mean?", [doc["doc_id"]], api_name="/chat")
        client.predict(True, api_name="/restart_model")
        runs = client.predict(api_name="/list_log_runs")
        assert len(runs) == 2 and runs[0]["current"] and not runs[1]["current"]
        text = "\n".join(client.predict(first["run_id"], "DEBUG", 100_000, api_name="/get_logs")["lines"])
        assert f"ingested document {doc['doc_id']}" in text, "the app's own logging is in the run's file"
        assert marker not in text and "crazy ones" not in text.lower(), "no user message or document text"
    finally:
        root.setLevel(old_level)
    with pytest.raises(AppError, match="no such log run"):
        client.predict("../../etc/passwd", "INFO", 10, api_name="/get_logs")
    with pytest.raises(AppError, match="`level` must be one of"):
        client.predict("", "LOUD", 10, api_name="/get_logs")


def test_run_logs_stay_under_their_cap_and_the_view_reads_only_the_tail(tmp_path):
    from backend.inference import RunLogs

    cap = 64 * 1024
    logs = RunLogs(tmp_path / "runs", cap)
    root, old = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.INFO)
    try:
        for run in range(3):  # three model runs, each writing four times the cap
            logs.start(f"model-{run}.gguf")
            for i in range(2000):
                logging.getLogger("burst").info("line %d of run %d %s", i, run, "x" * 100)
    finally:
        root.setLevel(old)
    current = logs.current
    tail = logs.read(None, "INFO", 5)
    logs.close()
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "runs").iterdir()}
    assert sum(sizes.values()) <= cap, sizes
    assert any(name.startswith(current) for name in sizes), "the current run is never pruned"
    assert len(tail) == 5 and tail[-1].endswith("x" * 100) and "line 1999 of run 2" in tail[-1]
