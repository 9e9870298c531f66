"""Gradio's copy of an upload (``components.upload_copies.discard_temp_copies``): Gradio keeps every upload of the
same file in one folder named by its SHA-256, so the copy one upload has read may be the copy another, still queued,
has yet to read (the 60-minute soaks lost uploads when it was deleted at once, then after a fixed grace time). It is
deleted after a grace time, once no other event in Gradio's queue names it, and not when the file was uploaded again
meanwhile; nothing outside Gradio's upload folder is touched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gradio.utils import get_upload_folder

from components.upload_copies import discard_temp_copies


def gradio_copy(data: bytes, name: str) -> Path:
    """A file where Gradio's upload route puts one: ``<upload folder>/<sha256>/<name>``."""
    folder = Path(get_upload_folder()) / hashlib.sha256(data + os.urandom(8)).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_the_copy_outlives_its_reading_by_the_grace_time_then_goes_with_its_folder():
    path = gradio_copy(b"a report", "report.txt")
    pending = discard_temp_copies([path], grace_s=0.3)
    assert path.read_bytes() == b"a report"  # a queued upload of the same file can still read it
    assert pending.join(5)
    assert not path.exists() and not path.parent.exists()


def test_a_copy_uploaded_again_meanwhile_is_left_to_that_upload():
    path = gradio_copy(b"a report", "report.txt")
    pending = discard_temp_copies([path], grace_s=0.3)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # Gradio renames a new file into place
    assert pending.join(5)
    assert path.exists()
    discard_temp_copies([path], grace_s=0).join(5)  # the second upload's own discard
    assert not path.exists()


def test_files_outside_the_upload_folder_are_never_touched(tmp_path):
    mine = tmp_path / "mine.txt"
    mine.write_text("keep me", encoding="utf-8")
    assert discard_temp_copies([mine, Path(get_upload_folder()), tmp_path / "missing.txt"], grace_s=0) is None
    assert mine.read_text(encoding="utf-8") == "keep me"


def test_an_upload_whose_copy_is_gone_gets_a_sentence_not_an_error_id(tmp_path):
    import pytest

    from backend.documents import DocumentError
    from components.common import check_upload

    with pytest.raises(DocumentError, match=r"^The uploaded file gone\.pdf is no longer on the server; upload it again\.$"):
        check_upload(None, None, tmp_path / "gone.pdf")  # the services are not reached


def test_a_copy_named_by_an_upload_still_queued_waits_for_it(tmp_path):
    """Two users send the same file; the first reads it, lets go of it and stays busy past the grace time while
    the second waits in the queue behind it (the soak's failure): the second still reads the file, then the copy goes."""
    import threading
    import time

    import gradio as gr
    from gradio_client import Client, handle_file

    started, discards, order = threading.Event(), [], []

    def read(file: str) -> str:
        first = not order
        order.append(file)
        if first:
            started.set()
            time.sleep(1.0)  # the second user's upload of the same bytes joins the queue meanwhile
        text = Path(file).read_text(encoding="utf-8")
        discards.append(discard_temp_copies([Path(file)], grace_s=0.3))
        if first:
            time.sleep(1.5)  # busy past the grace time, the second upload still queued
        return text

    with gr.Blocks() as demo:
        gr.Interface(read, gr.File(type="filepath"), gr.Textbox(), api_name="read", concurrency_limit=1)
    demo.queue().launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        source = tmp_path / "same.txt"
        source.write_text(f"the same bytes {os.urandom(4).hex()}", encoding="utf-8")
        first, second = Client(demo.local_url, verbose=False), Client(demo.local_url, verbose=False)
        job1 = first.submit(handle_file(str(source)), api_name="/read")
        assert started.wait(30)
        job2 = second.submit(handle_file(str(source)), api_name="/read")
        assert job1.result(30) == source.read_text(encoding="utf-8")
        assert job2.result(30) == source.read_text(encoding="utf-8")  # before the fix: "no such file"
        assert order[0] == order[1]  # one copy, shared
        assert all(d.join(10) for d in discards)
        assert not Path(order[0]).exists()  # gone once both were done with it
    finally:
        demo.close()
