"""Opening zip uploads into their documents (``backend.documents.bundle``), with real files: supported members
come out under their base names, everything else is named with the reason, and a member is never written
past the size limit whatever its header says."""

from __future__ import annotations

import zipfile
from pathlib import Path

from conftest import TESTDATA

from backend.documents.bundle import expand

MD = TESTDATA / "md_txt" / "pandoc_tables.md"
TXT = TESTDATA / "md_txt" / "chardet_windows-1252__ude_2.txt"
PDF = TESTDATA / "pdf" / "pypdf_crazyones.pdf"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_an_archive_opens_into_its_documents_and_names_what_it_skips(tmp_path):
    archive = make_zip(tmp_path / "library.zip", {
        "manuals/tables.md": MD.read_bytes(),
        "../../escape/notes.txt": TXT.read_bytes(),  # a path that would leave the work folder
        "papers/crazyones.pdf": PDF.read_bytes(),
        "tool.exe": b"MZ\x90\x00",
        "__MACOSX/manuals/._tables.md": b"resource fork",
        ".DS_Store": b"\x00\x00",
    })
    work = tmp_path / "work"
    bundle = expand([(archive, "library.zip"), (PDF, "plain.pdf")], work, 10 << 20)
    assert [name for _, name in bundle.files] == ["tables.md", "notes.txt", "crazyones.pdf", "plain.pdf"]
    assert bundle.files[0][0].read_bytes() == MD.read_bytes() and bundle.files[3][0] == PDF
    assert all(work in p.parents for p, _ in bundle.files[:3])  # nothing written outside the work folder
    assert not (tmp_path / "escape").exists()
    assert bundle.skipped == ["library.zip › tool.exe was skipped: it is not a PDF, DOCX, TXT, Markdown or image file."]


def test_a_member_past_the_limit_is_stopped_while_it_is_read(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"big.txt": b"0" * (3 << 20), "small.md": b"# fine\n"})
    assert archive.stat().st_size < 20_000  # 3 MiB that compress to a few KB: a zip bomb's shape
    bundle = expand([(archive, "bomb.zip")], tmp_path / "work", 1 << 20)
    assert [name for _, name in bundle.files] == ["small.md"]
    assert bundle.skipped == ["bomb.zip › big.txt was skipped: it is larger than the 1 MiB upload limit."]
    assert not list((tmp_path / "work").rglob("big.txt"))


def test_a_damaged_archive_is_one_sentence(tmp_path):
    cut = tmp_path / "cut.zip"
    cut.write_bytes(make_zip(tmp_path / "whole.zip", {"a.md": MD.read_bytes()}).read_bytes()[:200])
    bundle = expand([(cut, "cut.zip"), (TESTDATA / "bad" / "derived_html_renamed.pdf", "x.zip")], tmp_path / "w",
                    1 << 20)
    assert bundle.files == []
    assert len(bundle.skipped) == 2 and all("could not be opened as a zip archive" in s for s in bundle.skipped)
