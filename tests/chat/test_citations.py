"""Answers a reader can check, with the real SmolLM2 through the app's backend, greedy: each answer cites
the sentence (and page) that holds it, says when the documents do not hold the answer, and auto picks
the mode this model answers best in; the date line goes only into questions about time."""

from __future__ import annotations

import json

import pytest
from chat.test_real_answers import FACTS, GREEDY, QUESTIONS
from conftest import TESTDATA, make_settings
from pdfgen import write_pdf

from backend.services import build_services

PAGES = [["Harbor Lighthouse of Vellmora", "A short history of the town's harbor light."],
         ["The Harbor Lighthouse of Vellmora was built in 1887 by the engineer Odile Marchetti.",
          "The lighthouse is 47 meters tall and its lamp is green."],
         ["The keeper of the lighthouse is named Tobias Brennick.",
          "The lighthouse stands on Kestrel Point, an island in the Bay of Orlin."]]
ABSENT = ["Who won the Super Bowl in 2016?", "Which Normandy lord owned the lighthouse?"]  # names it never uses


def turn(services, question: str, doc_ids: list[str], mode: str = "auto") -> dict:
    """One question in a fresh session: the done event's text and data, and the saved messages."""
    sid = services.sessions.create("local")
    for event in services.chat.stream_turn("local", sid, question, doc_ids, GREEDY, mode=mode):
        if event.kind == "done":
            return {"answer": event.text, **event.data, "saved": services.sessions.get("local", sid).messages}
    raise AssertionError("the turn ended without a done event")


@pytest.fixture(scope="module")
def services(tmp_path_factory, smollm2, embedder):
    data = tmp_path_factory.mktemp("citations")
    svc = build_services(make_settings(data / "data", smollm2, n_ctx=8192, max_tokens=48, n_threads=None),
                         embedder=embedder)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def facts_md(services, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("docs") / "vellmora.md"
    path.write_text(FACTS, encoding="utf-8")
    row, _ = services.documents.upload("local", path)
    services.primer.cache_documents("local", [row.doc_id])
    return row.doc_id


def test_a_cag_answer_about_the_lighthouse_cites_the_sentence_that_holds_the_fact(services, facts_md):
    for question, fact in QUESTIONS.items():
        got = turn(services, question, [facts_md])
        assert fact.lower() in got["answer"].lower(), (question, got["answer"])
        assert got["metrics"]["mode"] == "cag" and got["metrics"]["mode_reason"].startswith("auto: ")
        assert got["grounding"] in ("supported", "partial") and got["metrics"]["grounding"] == got["grounding"]
        first = got["sources"][0]
        assert fact in first["quote"], (question, got["sources"])
        page = services.documents.pages("local", facts_md)[first["part"]]
        assert page.text[first["start"]:first["end"]] == first["quote"]  # the offsets point at the quote
        saved = got["saved"][-1]
        assert saved["sources"] == got["sources"] and saved["grounding"] == got["grounding"]
        assert 0 <= got["metrics"]["attribution_s"] < 1.0


def test_a_pdf_citation_carries_the_page_the_fact_is_on(services, tmp_path):
    pdf = write_pdf(tmp_path / "vellmora.pdf", PAGES)
    row, _ = services.documents.upload("local", pdf)
    for question, fact, page in (("Who is the keeper of the lighthouse?", "Tobias Brennick", 3),
                                 ("Who built the Harbor Lighthouse of Vellmora?", "Odile Marchetti", 2)):
        got = turn(services, question, [row.doc_id])
        assert fact in got["answer"] and got["grounding"] == "partial", got
        assert got["sources"][0]["page"] == page and fact in got["sources"][0]["quote"]
        view = services.viewer.open("local", got["sources"][0])
        assert view.marked and view.quote == got["sources"][0]["quote"] and f"p. {page}" in view.title


def test_a_question_about_something_absent_is_not_found_and_says_so(services, facts_md):
    for question in ABSENT:
        got = turn(services, question, [facts_md])
        assert got["grounding"] == "not_found" and got["sources"] == [], (question, got["answer"], got["sources"])
        assert got["grounding_note"] and got["saved"][-1]["grounding"] == "not_found"
    # Nothing the documents never name, so only the model's own words or its calibration could say ⚠; SmolLM2's
    # calibration allows neither mark (held-out ⚠ false rate 0.18 > 0.15): its answer is never ticked
    got = turn(services, "What is the price of oil after the raise?", [facts_md])
    assert got["grounding"] in ("partial", "not_found") and got["metrics"]["grounding"] == got["grounding"]


def test_the_date_line_goes_only_into_questions_about_time(services, facts_md):
    timeless = turn(services, "Who is the keeper of the lighthouse?", [facts_md])
    assert "sent" not in timeless["saved"][0]  # asked as typed: no date line
    assert "2026" not in timeless["answer"] and "UTC" not in timeless["answer"]
    timely = turn(services, "What day is it today?", [facts_md])
    sent = timely["saved"][0]["sent"]
    assert sent.startswith("[") and "UTC]" in sent.splitlines()[0] and sent.endswith("What day is it today?")
    assert timely["metrics"]["reused_tokens"] >= timely["metrics"]["prefix_tokens"]  # the date stays out of the prefix


@pytest.mark.slow
def test_auto_retrieves_from_a_document_longer_than_the_model_reads_well_and_says_why(services, tmp_path):
    article = json.loads((TESTDATA / "qa" / "squad-dev-v1.1.json").read_text(encoding="utf-8"))["data"][0]
    text = "\n\n".join(p["context"] for p in article["paragraphs"][:12])
    path = tmp_path / "super_bowl_50.txt"
    path.write_text(text, encoding="utf-8")
    row, _ = services.documents.upload("local", path)
    limit = services.chat.planner.cag_limit
    assert limit.tokens is not None and limit.tokens < row.tokens < services.engine.n_ctx - 512
    primed = services.primer.cache_documents("local", [row.doc_id])
    assert primed["tier"] == "chunks" and "so retrieval" in primed["reason"]  # Cache saves what auto will use
    got = turn(services, "Which NFL team represented the AFC at Super Bowl 50?", [row.doc_id])
    assert got["metrics"]["mode"] == "rag" and "reads well whole" in got["metrics"]["mode_reason"]
    assert got["metrics"]["cache_tier"] in ("ram", "disk")  # the chunk the Cache button saved
    assert "denver broncos" in got["answer"].lower() and "Denver Broncos" in got["sources"][0]["quote"]
    forced = turn(services, "Which NFL team represented the AFC at Super Bowl 50?", [row.doc_id], mode="cag")
    assert forced["metrics"]["mode"] == "cag" and forced["metrics"]["mode_reason"] == "cag: chosen by the user"


def test_answers_without_documents_have_no_verdict(services):
    got = turn(services, "Say hello.", [])
    assert got["grounding"] is None and got["sources"] == [] and got["metrics"]["mode"] == "chat"


@pytest.mark.slow
def test_a_deleted_documents_citation_gives_a_clear_error_in_the_viewer(services, tmp_path):
    path = tmp_path / "gone.md"
    path.write_text(FACTS, encoding="utf-8")
    row, _ = services.documents.upload("local", path)
    got = turn(services, "Who is the keeper of the lighthouse?", [row.doc_id])
    source = got["sources"][0]
    services.documents.delete("local", row.doc_id)
    from backend.documents import DocumentError

    with pytest.raises(DocumentError, match="does not exist"):
        services.viewer.open("local", source)
