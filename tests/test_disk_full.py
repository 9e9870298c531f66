"""A full disk: uploads and caching stop with one sentence and leave nothing half-written, chats go on.

The data dir lives on a real, small filesystem the test mounts (tmpfs, 48 MiB); where mounting is not
allowed (no root, or a container without CAP_SYS_ADMIN), the test is skipped and says why."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import TESTDATA, make_settings

from backend.documents import DocumentError
from backend.inference import EngineError
from backend.services import build_services
from backend.storage.disk import free_bytes

pytestmark = pytest.mark.slow  # mounts a filesystem and starts the services

OWNER = "local"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:  # a container without CAP_SYS_ADMIN: nothing to test the full disk on
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Write a filler file so that only about ``leave_bytes`` stay free."""
    with open(disk / "filler.bin", "ab") as f:
        f.write(b"\0" * max(0, free_bytes(disk) - leave_bytes))


def leftovers(data: Path) -> list[str]:
    return [str(p.relative_to(data)) for p in data.rglob("*.tmp")]


def test_a_full_disk_refuses_uploads_and_caching_with_a_sentence_and_chats_go_on(small_disk, tiny_model, embedder):
    data = small_disk / "data"
    services = build_services(make_settings(data, tiny_model, disk_reserve_mb=4, n_ctx=2048), embedder=embedder)

    def ask(question: str):
        return next(e for e in services.chat.stream_turn(OWNER, sid, question, [first.doc_id]) if e.kind == "done")

    try:
        first, _ = services.documents.upload(OWNER, TESTDATA / "pdf" / "pypdf_crazyones.pdf")
        sid = services.sessions.create(OWNER)
        assert services.disk_warning() is None

        fill(small_disk, 4 * 2**20 + 16 * 1024)  # 16 KiB above the 4 MiB reserve
        assert "Disk almost full" in services.disk_warning()
        with pytest.raises(DocumentError, match="too full, so 'pride_and_prejudice_pg1342.txt' was not saved"):
            services.documents.upload(OWNER, TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt")
        with pytest.raises(EngineError, match="too full, so the KV cache"):
            services.primer.cache_documents(OWNER, [first.doc_id])
        assert not list((data / "kvcache").glob("*.kv"))
        done = ask("What is this about?")  # the chat goes on: its prefix is kept in RAM, the answer saved
        assert done.data["metrics"]["stop_reason"] != "error" and len(services.sessions.get(OWNER, sid).messages) == 2
        assert ask("Who are the crazy ones?").data["metrics"]["reused_tokens"] > 0  # from RAM

        services.documents.disk_reserve_bytes = 0  # no reserve: the disk itself runs out mid-upload (ENOSPC)
        doc = TESTDATA / "md_txt" / "pandoc_writer.markdown.md"  # 10 KB: the file and its text fit, the index not
        services.chat.memory.flush()  # the questions' background memory writes land before the disk is filled
        fill(small_disk, 2 * doc.stat().st_size + 8 * 1024)
        with pytest.raises(DocumentError, match="too full") as err:
            services.documents.upload(OWNER, doc)
        assert "\n" not in str(err.value) and err.value.__cause__ is not None, "a write failed, not the check"
        print("ENOSPC came as:", type(err.value.__cause__).__name__, str(err.value.__cause__)[:120])
        assert [d.doc_id for d in services.documents.list(OWNER)] == [first.doc_id]  # nothing half-written
        assert sorted(p.name for p in (data / "uploads").iterdir()) == [first.doc_id]
        assert leftovers(data) == []
    finally:
        services.close()
    (small_disk / "filler.bin").unlink()
    services = build_services(make_settings(data, tiny_model, disk_reserve_mb=4, n_ctx=2048), embedder=embedder)
    try:  # after a restart: the same document, its chunks and nothing else; both answers kept
        assert services.recovery.orphan_chunks == 0 and services.recovery.orphan_folders == 0
        assert services.store.chunk_counts() == {first.doc_id: first.n_chunks}
        assert len(services.sessions.get(OWNER, sid).messages) == 4
    finally:
        services.close()
