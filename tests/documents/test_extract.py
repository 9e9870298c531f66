"""Extraction over every real test document: text comes out, or one clear sentence says why not."""

from __future__ import annotations

import re
import zipfile

import pytest
from conftest import TESTDATA

from backend.documents import DocumentError, PasswordRequired, extract

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
        numbers = [p.number for p in doc.pages]
        assert numbers == sorted(numbers) and set(numbers) <= set(range(1, doc.page_count + 1))
        if path.suffix == ".pdf":
            assert numbers == list(range(1, doc.page_count + 1))  # every page keeps its number
        return
    assert_one_sentence(str(err.value), path.name)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_pdf_text_matches_ground_truth():
    doc = extract((TESTDATA / "pdf" / "pypdf_crazyones.pdf").read_bytes(), "pypdf_crazyones.pdf")
    truth = (TESTDATA / "pdf" / "pypdf_crazyones.txt").read_text(encoding="utf-8")
    assert " ".join(doc.text.split()) == " ".join(truth.split())


def test_multi_column_pdf_reads_one_column_after_the_other():
    text = extract((TESTDATA / "pdf" / "sf_multicolumn.pdf").read_bytes(), "m.pdf").text
    lines = text.split("\n")
    # the ground-truth file is pypdf's side-by-side layout; a reader wants the left column first
    assert not any("Abstract" in line and "pellentesque" in line for line in lines)
    left_end = text.index("Nulla et lectus vestibulum")
    right_start = text.index("pellentesque ante. Phasellus")
    assert left_end < right_start
    truth = set(words((TESTDATA / "pdf" / "pypdf_multicolumn-lorem-ipsum.txt").read_text(encoding="utf-8")))
    assert truth <= set(words(text))


def test_multi_page_pdf_keeps_page_numbers():
    doc = extract((TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf").read_bytes(), "tracemonkey.pdf")
    assert len(doc.pages) == 14 and "Trace-based Just-in-Time" in doc.pages[0].text
    assert all(p.text.strip() for p in doc.pages)


@pytest.mark.parametrize("name", ["pypdf_r2-empty-password.pdf",  # empty user password
                                  "pypdf_r6-user-password.pdf"])  # AES-256, empty owner password
def test_empty_password_opens_silently(name):
    doc = extract((TESTDATA / "pdf" / name).read_bytes(), name)
    assert "encryption test" in doc.text


@pytest.mark.parametrize("name, word", [
    ("chardet_iso-8859-1__ude_1.txt", "observação"),  # Latin-1 Portuguese (cp1250 would give "observaçăo")
    ("chardet_windows-1252__ude_2.txt", "al…"),  # cp1252's ellipsis, absent from Latin-1
    ("chardet_utf-8-sig__ude_4.txt", "コンソール アプリケーション"),  # UTF-8 with BOM
])
def test_non_utf8_text_decodes_to_the_right_characters(name, word):
    text = extract((TESTDATA / "md_txt" / name).read_bytes(), name).text
    assert word in text and "\ufffd" not in text and not text.startswith("\ufeff")


def test_text_encodings_and_line_endings():
    crlf = extract((TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt").read_bytes(), "p.txt").text
    assert "\r" not in crlf and "It is a truth universally acknowledged" in crlf
    utf16 = extract("Grüße aus Köln, naïve café.\n".encode("utf-16"), "u.txt").text
    assert utf16.strip() == "Grüße aus Köln, naïve café."


def docx_text(name: str) -> str:
    return extract((TESTDATA / "docx" / name).read_bytes(), name).text


def test_docx_reads_tables_and_headers_once():
    doc = docx_text("pandoc_tables.docx")
    assert "Name | Game | Fame" in doc.replace("  ", " ")
    body = docx_text("pydocx_blk-paras-and-tables.docx").split("\n")
    assert any(" | " in line for line in body)  # each table row is one line of cells
    hdr = docx_text("pydocx_hdr-header-footer.docx")
    assert hdr.count("Header for section-1") == 1
    first = docx_text("pydocx_sct-first-page-hdrftr.docx")
    assert first.count("Default (odd, primary) Header") == 1 and "First Page Header (section 2)" in first


def test_docx_keeps_list_numbers_as_text():
    assert docx_text("pydocx_num-having-numbering-part.docx").startswith("1. Paragraph having List Number style.")
    cell = docx_text("pandoc_table_with_list_cell.docx")
    assert "1. Cell with 2. A 3. Numbered list." in cell and "• Bullet list" in cell
    assert "• Second level of the list." in docx_text("pandoc_german_styled_lists.docx")


def test_docx_tracked_changes_keep_insertions_and_drop_deletions():
    assert "This is a text with two exciting insertions." in docx_text("pandoc_track_changes_insertion.docx")
    deleted = docx_text("pandoc_track_changes_deletion.docx")
    assert "This is a text with a deletion." in deleted and "excessively" not in deleted


def test_docx_footnotes_and_endnotes(tmp_path):
    """A real DOCX (whose notes parts hold only separators) given one footnote and one endnote."""
    source = TESTDATA / "docx" / "pydocx_blk-paras-and-tables.docx"
    out = tmp_path / "notes.docx"
    note = ('<w:{0} w:id="1"><w:p><w:r><w:t>{1}</w:t></w:r></w:p></w:{0}></w:{0}s>')
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "word/footnotes.xml":
                data = data.replace(b"</w:footnotes>", note.format("footnote", "Footnote about tables.").encode())
            elif item.filename == "word/endnotes.xml":
                data = data.replace(b"</w:endnotes>", note.format("endnote", "Endnote at the end.").encode())
            elif item.filename == "word/document.xml":
                data = data.replace(b"</w:p>", b'<w:r><w:footnoteReference w:id="1"/></w:r>'
                                                b'<w:r><w:endnoteReference w:id="1"/></w:r></w:p>', 1)
            zout.writestr(item, data)
    text = extract(out.read_bytes(), "notes.docx").text
    assert "[^1] Footnote about tables." in text and "[^e1] Endnote at the end." in text
    # the references stay where they were in the body, before the notes themselves
    assert 0 <= text.index("[^1][^e1]") < text.index("[^1] Footnote")


def test_markdown_headings_become_section_titles():
    doc = extract((TESTDATA / "md_txt" / "pandoc_MANUAL.md").read_bytes(), "MANUAL.md")
    sections = [p.section for p in doc.pages]
    assert "Description > Using pandoc" in sections
    assert not any("title:" in s for s in sections)  # YAML front matter is not a heading
    using = next(p for p in doc.pages if p.section == "Description > Using pandoc")
    assert using.text.startswith("## Using pandoc")
    suite = extract((TESTDATA / "md_txt" / "pandoc_testsuite.md").read_bytes(), "suite.md")
    assert "Headers > Level 2 with an embedded link" in [p.section for p in suite.pages]  # link markup dropped
    assert not any(p.section.startswith("#") for p in suite.pages)
