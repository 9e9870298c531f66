"""Kills lose nothing acknowledged: a process writing through the real services is SIGKILLed (with its
embedded Redis: the whole process group) at a known step, and the data dir is opened again and checked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from apprun import processes_with
from conftest import ROOT, TESTDATA, make_settings

from backend.services import build_services

pytestmark = pytest.mark.slow  # each runs and kills a process that loads the services

CHILD = ROOT / "tests" / "crash_child.py"
OWNER = "local"


def run_until(args: list[str], trigger: str, nth: int = 1, timeout_s: float = 180.0) -> list[str]:
    """Run ``crash_child.py`` with ``args`` until it prints the ``nth`` line starting with ``trigger``, then
    SIGKILL its process group; returns the lines it printed."""
    proc = subprocess.Popen([sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if sum(seen.startswith(trigger) for seen in lines) == nth:
                break
        else:
            raise AssertionError(f"the child ended before {trigger!r}: {lines[-5:]}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)
    return lines


def check(data: Path, tiny_model: Path, embedder, acknowledged: dict[str, str]):
    """Open the data dir again and check it: every acknowledged document (id -> a phrase in it) is listed,
    readable and searchable with its file present; chunks and rows agree; no folder or temp file is left
    over. Returns the services' start-up check (``Recovery``)."""
    services = build_services(make_settings(data, tiny_model), embedder=embedder)
    try:
        rows = {row.doc_id: row for row in services.documents.list(OWNER)}
        assert set(acknowledged) <= set(rows), "an acknowledged upload is missing"
        for doc_id, phrase in acknowledged.items():
            assert services.documents.file_of(rows[doc_id]).is_file()
            assert phrase in services.documents.text(OWNER, doc_id).text
            assert services.documents.search(OWNER, phrase, [doc_id], 1)[0].doc_id == doc_id
        counts = services.store.chunk_counts()
        assert counts == {doc_id: row.n_chunks for doc_id, row in rows.items()}, "chunks and rows disagree"
        assert sorted(p.name for p in (data / "uploads").iterdir()) == sorted(rows)
        assert not list(data.rglob("*.tmp"))
        return services.recovery
    finally:
        services.close()


def test_a_kill_while_an_upload_is_indexed_loses_no_acknowledged_document(tmp_path, tiny_model, embedder):
    data, files = tmp_path / "data", tmp_path / "files"
    files.mkdir()
    crazy = shutil.copy(TESTDATA / "pdf" / "pypdf_crazyones.pdf", files)
    pride = files / "pride_and_prejudice_part.txt"  # its first third: about 400 chunks, a write long enough to cut
    book = (TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt").read_bytes()
    pride.write_bytes(book[:len(book) // 3])
    lines = run_until(["upload", str(data), str(tiny_model), str(crazy), str(pride)], "progress Indexing",
                      nth=2)
    acked = [line.split()[1] for line in lines if line.startswith("acknowledged")]
    assert len(acked) == 1, lines  # the first upload returned; the second was being written when killed
    assert processes_with(str(data)) == [], "the kill took the embedded Redis too"
    found = check(data, tiny_model, embedder, {acked[0]: "The troublemakers"})
    assert found.orphan_folders == 1 and found.reindexed == 0, found  # the cut-short upload is swept
    # killed later, while the same file is re-indexed: the document stays, whole
    lines = run_until(["reindex", str(data), str(tiny_model), acked[0]], "progress Indexing")
    found = check(data, tiny_model, embedder, {acked[0]: "The troublemakers"})
    assert found.unrecoverable == [], found


def test_a_kill_while_a_kv_cache_is_written_never_serves_a_broken_entry(tmp_path, tiny_model, embedder):
    data = tmp_path / "data"
    lines = run_until(["cache", str(data), str(tiny_model), str(48 * 2**20)], "acknowledged 2")
    acked = [line.split()[1] for line in lines if line.startswith("acknowledged")]
    services = build_services(make_settings(data, tiny_model), embedder=embedder)
    try:
        kv = services.kv_store
        assert not list((data / "kvcache").glob("*.tmp"))
        keys = {e.key for e in kv.entries()}
        assert set(acked) <= keys, "an acknowledged cache entry is gone"
        for i, key in enumerate(sorted(keys)):
            entry = kv.entry(key)
            assert kv.load(key, entry.fingerprint, kv.tokens(key)) is not None, f"entry {i} fails its checksum"
        payloads = {p.stem for p in (data / "kvcache").glob("*.kv")}
        assert payloads == keys, "a payload without its sidecar was left"
    finally:
        services.close()
