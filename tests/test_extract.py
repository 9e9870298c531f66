"""Extraction over every real test document: text comes out, or one clear sentence says why not."""

from __future__ import annotations

import re

import pytest

from backend.extract import DocumentError, PasswordRequired, extract
from conftest import TESTDATA

FILES = sorted(p for folder in ("pdf", "docx", "md_txt") for p in (TESTDATA / folder).iterdir())
PASSWORDS = {
    "sf_libreoffice-writer-password.pdf": "openpassword",
    "pypdf_encrypted-file.pdf": "test",
    "pypdf_crazyones-encrypted-256.pdf": "password",
    "pdfjs_issue3371.pdf": "ELXRTQWS",
}
NO_TEXT_LAYER = {"sf_imagemagick-CCITTFaxDecode.pdf", "pdfjs_empty.pdf"}
EMPTY_DOCX = {"pydocx_blk-containing-table.docx", "pydocx_doc-word-default-blank.docx",
              "pydocx_having-images.docx", "pydocx_tbl-having-tables.docx"}  # images or empty table cells only


def assert_one_sentence(message: str, filename: str) -> None:
    assert "\n" not in message and message.endswith(".") and filename in message
    assert message.count(". ") == 0, f"more than one sentence: {message}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_file_reads_or_fails_clearly(path):
    data = path.read_bytes()
    if path.suffix == ".native":
        with pytest.raises(DocumentError, match="unsupported type") as err:
            extract(data, path.name)
    elif path.name in PASSWORDS:
        with pytest.raises(PasswordRequired, match="password") as err:
            extract(data, path.name)
        if path.name == "pdfjs_issue3371.pdf":  # opens with its password, but its pages are images
            with pytest.raises(DocumentError, match="probably a scanned image"):
                extract(data, path.name, PASSWORDS[path.name])
        else:
            assert extract(data, path.name, PASSWORDS[path.name]).text.strip()
        with pytest.raises(PasswordRequired, match="wrong"):
            extract(data, path.name, "not-the-password")
    elif path.name in NO_TEXT_LAYER:
        with pytest.raises(DocumentError, match="probably a scanned image") as err:
            extract(data, path.name)
    elif path.name in EMPTY_DOCX:
        with pytest.raises(DocumentError, match="no text") as err:
            extract(data, path.name)
    else:
        doc = extract(data, path.name)
        assert doc.text.strip() and "\r" not in doc.text and "\ufeff" not in doc.text
        assert [p.number for p in doc.pages] == list(range(1, len(doc.pages) + 1))
        return
    assert_one_sentence(str(err.value), path.name)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_pdf_text_matches_ground_truth():
    doc = extract((TESTDATA / "pdf" / "pypdf_crazyones.pdf").read_bytes(), "pypdf_crazyones.pdf")
    truth = words((TESTDATA / "pdf" / "pypdf_crazyones.txt").read_text(encoding="utf-8"))
    got = words(doc.text)
    assert len(set(truth) & set(got)) / len(set(truth)) > 0.95


def test_multi_page_pdf_keeps_page_numbers():
    doc = extract((TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf").read_bytes(), "tracemonkey.pdf")
    assert len(doc.pages) == 14 and "Trace-based Just-in-Time" in doc.pages[0].text
    assert all(p.text.strip() for p in doc.pages)


@pytest.mark.parametrize("name", ["pypdf_r2-empty-password.pdf",  # empty user password
                                  "pypdf_r6-user-password.pdf"])  # AES-256, empty owner password
def test_empty_password_opens_silently(name):
    doc = extract((TESTDATA / "pdf" / name).read_bytes(), name)
    assert "encryption test" in doc.text


def test_text_encodings_and_line_endings():
    cp1252 = extract((TESTDATA / "md_txt" / "chardet_windows-1252__ude_2.txt").read_bytes(), "a.txt").text
    assert "\ufffd" not in cp1252 and "Stipan Arkadiewitsch" in cp1252
    bom = extract((TESTDATA / "md_txt" / "chardet_utf-8-sig__ude_4.txt").read_bytes(), "b.txt").text
    assert not bom.startswith("\ufeff")
    crlf = extract((TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt").read_bytes(), "p.txt").text
    assert "\r" not in crlf and "It is a truth universally acknowledged" in crlf
    utf16 = extract("Grüße aus Köln, naïve café.\n".encode("utf-16"), "u.txt").text
    assert utf16.strip() == "Grüße aus Köln, naïve café."


def test_docx_reads_tables_and_headers_once():
    doc = extract((TESTDATA / "docx" / "pandoc_tables.docx").read_bytes(), "t.docx").text
    assert "Name | Game | Fame" in doc.replace("  ", " ")
    hdr = extract((TESTDATA / "docx" / "pydocx_hdr-header-footer.docx").read_bytes(), "h.docx").text
    assert hdr.count("Header for section-1") == 1
