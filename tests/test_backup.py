"""``python -m backend.storage.admin backup|restore``: a consistent snapshot of a running app's data dir, restored whole."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading

import pytest
from conftest import ROOT, TESTDATA, make_settings

from backend.services import build_services
from backend.storage.admin import AdminError, restore

pytestmark = pytest.mark.slow  # two apps' services, uploads while the backup runs

OWNER = "local"


def test_a_backup_taken_while_the_app_writes_restores_with_everything_it_had(tmp_path, tiny_model, embedder):
    data, backup_dir, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    services = build_services(make_settings(data, tiny_model), embedder=embedder)
    try:
        doc, _ = services.documents.upload(OWNER, TESTDATA / "pdf" / "pypdf_crazyones.pdf")
        sid = services.sessions.create(OWNER)
        answer = next(e for e in services.chat.stream_turn(OWNER, sid, "Who are they?", [doc.doc_id])
                      if e.kind == "done").text
        stop, files = threading.Event(), tmp_path / "files"
        files.mkdir()

        def keep_writing():  # uploads and turns land while the backup copies
            for i in range(1000):
                if stop.is_set():
                    return
                path = files / f"note{i}.txt"
                path.write_text(f"Note number {i} says the tide turns at {i} o'clock.\n\n" * 20)
                services.documents.upload(OWNER, path)
                services.sessions.append(OWNER, sid, {"role": "user", "content": f"extra {i}"})

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            done = subprocess.run([sys.executable, "-m", "backend.storage.admin", "backup", str(backup_dir), "--data-dir",
                                   str(data)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        finally:
            stop.set()
            writer.join()
        assert done.returncode == 0, done.stderr
        assert "Backed up" in done.stdout and (backup_dir / "backup.json").is_file()
        with pytest.raises(AdminError, match="An app is running"):
            restore(backup_dir, data)
    finally:
        services.close()
    with pytest.raises(AdminError, match="not empty"):
        restore(backup_dir, data)
    restore(backup_dir, restored)
    again = build_services(make_settings(restored, tiny_model), embedder=embedder)
    try:
        rows = {r.doc_id: r for r in again.documents.list(OWNER)}
        assert doc.doc_id in rows and "The troublemakers" in again.documents.text(OWNER, doc.doc_id).text
        assert again.store.chunk_counts() == {d: r.n_chunks for d, r in rows.items()}  # no half-copied document
        assert all(again.documents.file_of(r).is_file() for r in rows.values())
        messages = again.sessions.get(OWNER, sid).messages
        assert [m["content"] for m in messages[:2]] == ["Who are they?", answer]
        assert again.recovery.unrecoverable == []
    finally:
        again.close()
    shutil.rmtree(restored)
