"""Multi-hop search through the documents a text names (``backend.documents.links``): the names read from
file names, whole-word matching, the re-ranking rules, and a real HotpotQA bridge question over a real library
(LanceDB, MiniLM) whose second paragraph is found only through the first."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.documents import DocumentService, Store
from backend.documents.links import LINK_WEIGHT, TITLE_WEIGHT, heading_of, linked, names, title_of
from backend.documents.search import fused

HOTPOT = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "hotpotqa" / "tuning.jsonl"
OWNER = "local"


def test_a_document_is_named_by_its_file_name_read_as_words():
    assert title_of("Ed Wood (film).txt") == "ed wood"
    assert title_of("Super_Bowl_50.txt") == "super bowl 50"
    assert title_of("Androscoggin Bank Colisée.md") == "androscoggin bank colisée"
    assert title_of("a.txt") == "" and title_of("Ox (band).pdf") == ""  # too short to match safely
    assert names("Directed by ED  WOOD in 1953.", "Ed Wood (film).txt")
    assert not names("Edward Woodson was born in Arkansas.", "Ed Wood.txt"), "whole words only"
    assert not names("The woodsman.", "a.txt")
    assert title_of("Document (2).pdf") == "" and not names("What does the document say?", "document.pdf")


def row(doc: str, idx: int, score: float, text: str = "", section: str = "") -> dict:
    return {"doc_id": doc, "idx": idx, "text": text or f"{doc} chunk {idx}", "_relevance": score, "section": section}


def test_the_question_and_the_lead_chunks_raise_the_documents_they_name():
    doc_names = {"a": "Kiss and Tell (1945 film).txt", "b": "Shirley Temple.txt", "c": "Corliss Archer.txt",
                 "d": "Other.txt"}
    rows = [row("a", 0, 0.9, "Kiss and Tell is a 1945 comedy starring Shirley Temple as Corliss Archer."),
            row("d", 0, 0.8), row("d", 1, 0.7), row("c", 0, 0.5), row("b", 0, 0.3), row("b", 1, 0.2)]
    ranked = linked(rows, doc_names, "Who portrayed Corliss Archer in Kiss and Tell?", k=4)
    keys = [(r["doc_id"], r["idx"]) for r in ranked]
    # the question names a and c (each chunk of theirs gains TITLE_WEIGHT); a and c are then the two leads,
    # and a's text names b: b's best chunk gains LINK_WEIGHT, its second chunk does not
    assert keys == [("a", 0), ("c", 0), ("b", 0), ("d", 0)]
    assert ranked[0]["_relevance"] == pytest.approx(0.9 + TITLE_WEIGHT)
    assert ranked[2]["_relevance"] == pytest.approx(0.3 + LINK_WEIGHT)
    scores = [r["_relevance"] for r in linked(rows, doc_names, "Who is Shirley Temple in Kiss and Tell?", k=6)]
    assert scores == sorted(scores, reverse=True), "a raised chunk's score is capped at the last lead's"
    full = linked(rows, doc_names, "Who portrayed Corliss Archer in Kiss and Tell?", k=10)
    assert next(r for r in full if (r["doc_id"], r["idx"]) == ("b", 1))["_relevance"] == pytest.approx(0.2)
    assert len(full) == len(rows), "nothing is added or lost: only the candidates are re-ranked"


def test_a_section_is_named_by_its_last_heading():
    assert heading_of("Teams > Lewiston Maineiacs") == "lewiston maineiacs"
    assert heading_of("Androscoggin Bank Colisée (arena)") == "androscoggin bank colisée"
    assert heading_of("") == "" and heading_of("Intro > FAQ") == "" and heading_of("Notes > Text") == ""


def test_a_lead_chunk_raises_the_sections_of_its_own_document_it_names():
    """One document, its paragraphs as sections: the lead names another of its sections, which is raised; a
    section of another document with the same heading is not (a file name links across the library, a heading
    within its document)."""
    doc_names = {"q": "question-007.md", "z": "Elsewhere.md"}
    rows = [row("q", 0, 0.9, "The Lewiston Maineiacs played at the Androscoggin Bank Colisée.", "Lewiston Maineiacs"),
            row("q", 1, 0.8, "Lewiston is a city in Maine.", "Lewiston, Maine"),
            row("q", 2, 0.7, "Portland is a city.", "Portland"),
            row("z", 0, 0.6, "Another arena.", "Androscoggin Bank Colisée"),
            row("q", 3, 0.5, "It seats 3,677 people.", "Androscoggin Bank Colisée"),
            row("q", 4, 0.4, "More about the arena.", "Androscoggin Bank Colisée")]
    ranked = linked(rows, doc_names, "How many people can the arena seat?", k=6)
    keys = [(r["doc_id"], r["idx"]) for r in ranked]
    assert keys[:3] == [("q", 0), ("q", 1), ("q", 3)], "the named section's best chunk comes third"
    assert ranked[2]["_relevance"] == pytest.approx(0.8), "capped at the last lead's score"
    assert next(r for r in ranked if r["doc_id"] == "z")["_relevance"] == pytest.approx(0.6)
    assert next(r for r in ranked if r["idx"] == 4 and r["doc_id"] == "q")["_relevance"] == pytest.approx(0.4)
    by_question = linked(rows, doc_names, "Who played in the Androscoggin Bank Colisée?", k=6)
    assert {(r["doc_id"], r["idx"]) for r in by_question[:2]} == {("q", 3), ("z", 0)}, "the question names it"


def test_unnamed_documents_keep_the_fused_order():
    rows = [row("x", i, 1.0 - i / 10) for i in range(6)]
    assert linked(rows, {"x": "notes_2024.txt"}, "what changed in the budget?", k=5) == rows[:5]


@pytest.mark.slow  # embeds 50 paragraphs with the real model
def test_a_bridge_question_finds_its_second_paragraph_through_the_first(tmp_path, embedder):
    """HotpotQA tuning question 7: "The arena where the Lewiston Maineiacs played their home games can seat how
    many people?" The arena's own paragraph (Androscoggin Bank Colisée) shares almost no words with the
    question; the Lewiston Maineiacs paragraph names it."""
    questions = [json.loads(line) for line in HOTPOT.read_text(encoding="utf-8").splitlines()[:8]]
    store = Store(tmp_path / "lancedb", embedder.dim, embedder.name)
    documents = DocumentService(tmp_path / "uploads", store, embedder, max_upload_bytes=10 << 20,
                                chunk_tokens=256, overlap_tokens=40)
    by_title = {}
    for q in questions:
        for title, sentences in q["context"]:
            if title not in by_title:
                path = tmp_path / (re.sub(r"[^\w .,()'-]+", "_", title) + ".txt")
                path.write_text(title + "\n\n" + "".join(sentences), encoding="utf-8")
                by_title[title] = documents.upload(OWNER, path)[0].doc_id
    q = questions[7]
    assert q["gold_titles"] == ["Lewiston Maineiacs", "Androscoggin Bank Colisée"]
    gold = {by_title[t] for t in q["gold_titles"]}
    hits = documents.search(OWNER, q["question"], None, 5)
    assert gold <= {h.doc_id for h in hits}, [h.name for h in hits]
    arena = next(h for h in hits if h.doc_id == by_title["Androscoggin Bank Colisée"])
    assert "3,677" in arena.text
    before = fused(store.chunks, q["question"], embedder.encode_query(q["question"]), f"owner = '{OWNER}'", 30)
    rank = [r["doc_id"] for r in before].index(by_title["Androscoggin Bank Colisée"])
    assert rank >= 5, "the fused search alone leaves the arena out of the top 5: the link is what finds it"
