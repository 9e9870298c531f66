"""What the store's clean-up leaves open (issue 45's soak): LanceDB's session caches every index it opens, and a
full-text index generation stays open after ``optimize()`` replaced it and the clean-up deleted its files, so the
descriptors added up (36 after 22 minutes of eight users) and the deleted files' bytes stayed on the disk. After
``Store.purge`` and ``MemoryIndex.purge`` the process holds no deleted file of the data dir, and search still
works."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import TESTDATA

from backend.chat.memory import MemoryIndex
from backend.documents import DocumentService, Store
from backend.documents.store import OPTIMIZE_EVERY_WRITES

OWNER = "local"


def deleted_files_held(folder: Path) -> list[str]:
    """The files under ``folder`` this process still holds open though they were deleted."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(str(folder)) and target.endswith("(deleted)"):
            held.append(target)
    return held


def test_after_the_clean_up_no_deleted_index_file_stays_open(tmp_path, embedder):
    store = Store(tmp_path / "lancedb", embedder.dim, embedder.name)
    documents = DocumentService(tmp_path / "uploads", store, embedder, max_upload_bytes=1 << 20,
                                chunk_tokens=256, overlap_tokens=40)
    memory = MemoryIndex(documents, embedder)
    article = json.loads((TESTDATA / "qa" / "squad-dev-v1.1.json").read_text(encoding="utf-8"))["data"][0]
    rows = []
    for i, paragraph in enumerate(article["paragraphs"][:OPTIMIZE_EVERY_WRITES + 2]):  # past one optimize()
        path = tmp_path / f"part-{i}.txt"
        path.write_text(paragraph["context"], encoding="utf-8")
        rows.append(documents.upload(OWNER, path)[0])
        assert documents.search(OWNER, "Who won Super Bowl 50?", None, 3)  # opens the index of the moment
        memory.add(OWNER, f"s{i % 2}", paragraph["qas"][0]["question"])
    assert memory.recall(OWNER, "s0", "Super Bowl", 2)
    for row in rows[:-1]:
        documents.delete(OWNER, row.doc_id)
    memory.delete_session(OWNER, "s1")
    store.purge()
    memory.purge()

    assert deleted_files_held(tmp_path) == []
    hits = documents.search(OWNER, paragraph["qas"][0]["question"], None, 3)
    assert hits and {h.doc_id for h in hits} == {rows[-1].doc_id}
    assert memory.recall(OWNER, "s1", "Super Bowl", 2)  # s0's questions, from the table opened again
    memory.close()
