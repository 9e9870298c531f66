"""Malformed files in bulk (issue 45, property-based with Hypothesis): real files from the shared test data with
bytes flipped, cut short, spliced with garbage, renamed to another kind, packed in (damaged) zips, and random bytes
under every extension, through the same upload path the API uses (``expand``, then ``DocumentService.upload``).
Each is stored or refused with one sentence naming it; no other exception, no hang (the parsers run in a child
process under ``KVC_EXTRACT_TIME_LIMIT_S``), nothing written outside the data dir, nothing left behind.

The fast tier tries a few files; the slow tier a bounded budget; ``benchmarks/fuzz.py --minutes N`` runs longer.
"""

from __future__ import annotations

import pytest
from conftest import TESTDATA, make_settings
from fuzzing import mutated_file, upload_holds
from hypothesis import HealthCheck, given, settings

from backend.documents import DocumentError
from backend.services import build_services


@pytest.fixture(scope="module")
def documents(tmp_path_factory, embedder):
    """The documents' service of a real app (OCR off: images are still decoded and checked), a 5 s parser limit."""
    folder = tmp_path_factory.mktemp("fuzz-files")
    svc = build_services(make_settings(folder / "data", None, ocr=False, extract_time_limit_s=5.0), embedder=embedder)
    svc.documents.open()
    work = folder / "work"
    work.mkdir()
    yield svc, work
    svc.close()


def fuzz(documents, examples: int) -> None:
    svc, work = documents
    seen = {"stored": 0, "refused": 0, "skipped": 0}

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated_file())
    def one_file(file):
        name, data = file
        seen[upload_holds(svc.documents, name, data, work, svc.settings.max_upload_bytes)] += 1

    one_file()
    assert seen["refused"] and seen["stored"], seen  # the mix holds both: the property was tested both ways
    assert sorted(p.name for p in work.iterdir()) == [], "a temp file was left behind"
    uploads = svc.settings.data_dir / "uploads"
    assert {p.name for p in uploads.iterdir()} == {d.doc_id for d in svc.documents.list("fuzz")}


def test_mutated_and_random_files_are_stored_or_refused_with_a_sentence_fast(documents):
    fuzz(documents, 40)


@pytest.mark.slow
def test_mutated_and_random_files_are_stored_or_refused_with_a_sentence(documents):
    fuzz(documents, 120)


def test_a_file_past_the_time_limit_is_refused_and_the_next_one_reads(documents, tmp_path):
    svc, _ = documents
    pdf = tmp_path / "tracemonkey.pdf"
    pdf.write_bytes((TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf").read_bytes())
    svc.documents.extract_time_limit_s = 0.05  # 14 pages take longer than that to read
    try:
        with pytest.raises(DocumentError, match=r"'tracemonkey.pdf' could not be read \(over the 0.05 s limit\)"):
            svc.documents.upload("fuzz", pdf)
    finally:
        svc.documents.extract_time_limit_s = 5.0
    row, created = svc.documents.upload("fuzz", pdf)
    assert created and row.pages == 14


def test_a_pdf_whose_stream_filter_name_is_damaged_is_refused_with_a_sentence(documents, tmp_path):
    """Found by ``benchmarks/fuzz.py``: one flipped byte in a filter name (``/FlateDecode`` -> ``/\\x00lateDecode``)
    made pypdf raise NotImplementedError ("Unsupported filter"), which reached the user as an error id."""
    svc, _ = documents
    path = tmp_path / "flipped.pdf"
    path.write_bytes((TESTDATA / "pdf" / "pypdf_crazyones.pdf").read_bytes().replace(b"/FlateDecode", b"/\x00lateDecode", 1))
    with pytest.raises(DocumentError, match=r"^'flipped\.pdf' could not be read as a PDF"):
        svc.documents.upload("fuzz", path)
