"""Bad uploads through the real app: one plain sentence each, and nothing else is lost."""

from __future__ import annotations

import shutil

import pytest
from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import handle_file
from gradio_client.exceptions import AppError

GOOD = TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf"


@pytest.fixture
def app_with_state(tmp_path, tiny_model, embedder):
    """An app holding one cached document and a session with one turn; upload limit 0.5 MB."""
    app = launch(make_settings(tmp_path / "data", tiny_model, max_upload_mb=0.5), embedder)
    doc = app.client.predict(handle_file(str(GOOD)), "", api_name="/upload_document")
    app.client.predict(doc["doc_id"], api_name="/cache_document")
    sid = app.client.predict(api_name="/create_session")
    list(app.client.submit(sid, "What is it about?", [doc["doc_id"]], api_name="/chat"))
    yield app, doc, sid
    stop(app)


def make_inputs(tmp_path) -> list[tuple]:
    """(path, password, expected words in the message) for every kind of bad input."""
    cases = [(p, "", None) for p in sorted((TESTDATA / "bad").iterdir())]
    unsupported = tmp_path / "slides.pptx"
    unsupported.write_bytes(b"PK\x03\x04 not really a deck")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    cases += [
        (unsupported, "", "unsupported type"),
        (empty, "", "empty"),
        (TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf", "", "upload limit"),  # 1 MB > 0.5 MB
        (TESTDATA / "pdf" / "pypdf_encrypted-file.pdf", "", "password-protected"),
        (TESTDATA / "pdf" / "pypdf_encrypted-file.pdf", "wrong", "password"),
        (TESTDATA / "pdf" / "sf_imagemagick-CCITTFaxDecode.pdf", "", "OCR found no text"),  # an 8x8-pixel image
    ]
    return cases


EXPECTED_BAD = {
    "derived_html_renamed.pdf": "contents are an HTML page",
    "derived_pdf_renamed.docx": "contents are a PDF",
    "derived_tracemonkey_truncated_50pct.pdf": "incomplete",
    "derived_zero_bytes.pdf": "empty",
}


@pytest.mark.slow
def test_bad_uploads_fail_clearly_and_lose_nothing(app_with_state, tmp_path):
    app, doc, sid = app_with_state
    before_docs = app.client.predict(api_name="/list_documents")
    before_history = app.client.predict(sid, api_name="/get_history")["messages"]
    kv_files = sorted(p.name for p in (app.services.settings.data_dir / "kvcache").iterdir())
    for path, password, expected in make_inputs(tmp_path):
        expected = expected or EXPECTED_BAD[path.name]
        with pytest.raises(AppError) as err:
            app.client.predict(handle_file(str(path)), password, api_name="/upload_document")
        message = str(err.value)
        assert expected in message and path.name in message, message
        assert "\n" not in message and "Traceback" not in message
    assert app.client.predict(api_name="/list_documents") == before_docs
    assert app.client.predict(sid, api_name="/get_history")["messages"] == before_history
    assert sorted(p.name for p in (app.services.settings.data_dir / "kvcache").iterdir()) == kv_files
    assert len(list((app.services.settings.data_dir / "uploads").iterdir())) == 1, "no stray upload folders"
    # and the app still answers from the cached document
    _, last = list(app.client.submit(sid, "And the conclusion?", [doc["doc_id"]], api_name="/chat"))[-2:]
    assert last["metrics"]["mode"] == "cag" and last["metrics"]["reused_tokens"] >= doc["tokens"]


# every encrypted PDF of the testdata README with a text layer, and its password
ENCRYPTED = {"sf_libreoffice-writer-password.pdf": "openpassword", "pypdf_encrypted-file.pdf": "test",
             "pypdf_crazyones-encrypted-256.pdf": "password", "pypdf_r6-user-password.pdf": "asdfzxcv",
             "pypdf_r2-empty-password.pdf": ""}


@pytest.mark.slow
def test_encrypted_pdfs_upload_with_their_passwords(app_with_state):
    app, _, _ = app_with_state
    for name, password in ENCRYPTED.items():
        doc = app.client.predict(handle_file(str(TESTDATA / "pdf" / name)), password, api_name="/upload_document")
        assert doc["created"] and doc["pages"] >= 1 and doc["chars"] > 0, name
    crazy = next(d for d in app.client.predict(api_name="/list_documents")
                 if d["name"] == "pypdf_crazyones-encrypted-256.pdf")
    hits = app.client.predict("the crazy ones, the misfits", [crazy["doc_id"]], 1, api_name="/search_documents")
    assert "misfits" in hits[0]["text"].replace("ﬁ", "fi")  # AES-256 text is searchable once opened


@pytest.mark.slow
def test_identical_reupload_is_not_stored_twice(app_with_state, tmp_path):
    app, doc, _ = app_with_state
    copy = tmp_path / "renamed copy.pdf"
    shutil.copy(GOOD, copy)
    again = app.client.predict(handle_file(str(copy)), "", api_name="/upload_document")
    assert again["doc_id"] == doc["doc_id"] and again["created"] is False
    assert len(app.client.predict(api_name="/list_documents")) == 1


@pytest.mark.slow
def test_chat_errors_are_plain_sentences(app_with_state):
    app, doc, sid = app_with_state
    for args, expected in [((sid, "   ", [doc["doc_id"]]), "empty"),
                           (("0" * 32, "hello", []), "does not exist or has expired"),
                           ((sid, "hello", ["no-such-doc"]), "does not exist")]:
        with pytest.raises(AppError, match=expected):
            app.client.predict(*args, api_name="/chat")
    with pytest.raises(AppError, match="does not exist"):
        app.client.predict("no-such-doc", api_name="/cache_document")


@pytest.mark.slow
def test_a_bulk_upload_with_broken_files_uploads_the_rest_and_names_the_broken_ones(app_with_state, tmp_path):
    import zipfile

    app, doc, _ = app_with_state
    archive = tmp_path / "folder.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(TESTDATA / "md_txt" / "pandoc_tables.md", "notes/tables.md")
        z.write(TESTDATA / "bad" / "derived_zero_bytes.pdf", "notes/empty.pdf")
        z.writestr("notes/slides.pptx", b"PK\x03\x04 not a document")
    files = [handle_file(str(p)) for p in (TESTDATA / "md_txt" / "chardet_utf-8-sig__ude_4.txt",
                                           TESTDATA / "bad" / "derived_html_renamed.pdf", archive)]
    result = app.client.predict(files, "", False, api_name="/upload_documents")
    assert sorted(d["name"] for d in result["documents"]) == ["chardet_utf-8-sig__ude_4.txt", "tables.md"]
    assert all(d["created"] and d["chunks"] >= 1 for d in result["documents"])
    failed = result["failed"]
    assert len(failed) == 3, failed
    assert any("derived_html_renamed.pdf" in f for f in failed) and any("empty.pdf" in f for f in failed)
    assert any("slides.pptx" in f and "not a PDF, DOCX, TXT, Markdown or image" in f for f in failed)
    assert all("\n" not in f and "Traceback" not in f for f in failed)
    assert result["summary"].startswith("2 uploaded, 3 not uploaded")
    listed = {d["name"] for d in app.client.predict(api_name="/list_documents")}
    assert listed == {doc["name"], "chardet_utf-8-sig__ude_4.txt", "tables.md"}
