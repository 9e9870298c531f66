"""The verdict model (``backend.grounding.verdict``) on real text: an answer whose claim sits in one sentence and the
question's subject in another scores below one that a single sentence states, specifics are found as written, and
the rule before the model decides ⚠ whatever the model says."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backend.documents import extract
from backend.grounding import PassageIndex, attribute, passages_of, verdict
from backend.grounding.calibration import SHIPPED, read_calibration

SMOLLM2 = read_calibration(SHIPPED / "smollm2-135m-instruct-q4_1.json")
FITTED = replace(SMOLLM2, held_out={"supported_precision": 1.0, "not_found_false_rate": 0.0})
# ^ the verdict as fitted, every mark allowed (the app shows a mark only where the held-out figures allow it)

NORMANS = ("# Normans\n\nThe Normans conquered England in 1066 under William the Conqueror. Many years later, the "
           "Byzantine general Herve led a company of mercenaries in Anatolia during the 1050s. The abbey of Fecamp "
           "was founded by Richard I, who ruled the duchy after his father.\n")
QUESTION = "When did Herve lead mercenaries in Anatolia?"


@pytest.fixture(scope="module")
def normans() -> PassageIndex:
    return PassageIndex.build(passages_of("d1", "normans.md", extract(NORMANS.encode(), "normans.md").pages))


def test_a_figure_the_document_gives_for_another_event_scores_below_the_one_it_gives_for_this(normans):
    right = attribute(QUESTION, "Herve led mercenaries in Anatolia in the 1050s.", [normans], calibration=FITTED)
    wrong = attribute(QUESTION, "Herve led mercenaries in Anatolia in 1066.", [normans], calibration=FITTED)
    assert right.signals["support"] == wrong.signals["support"] == 1.0  # both figures are in the document
    assert right.signals["question_here"] > wrong.signals["question_here"] == 0.0  # 1066's sentence has no Herve
    assert right.signals["colocated"] > wrong.signals["colocated"]
    assert right.confidence > wrong.confidence > 0
    assert right.grounding != "not_found" and "1050s" in right.sources[0].quote


def test_an_answer_about_a_sentence_without_the_question_is_not_found_with_the_closest_passage(normans):
    found = attribute("Who founded the abbey of Fecamp?", "The abbey of Fecamp was founded by William the Conqueror.",
                      [normans], calibration=FITTED)
    assert found.grounding == "not_found" and found.sources == [] and found.signals["specifics_away"] == 1.0
    assert "Fecamp" in found.closest.quote


def test_similarity_is_measured_when_given_and_neutral_while_the_embedder_loads(normans):
    answer = "The abbey of Fecamp was founded by Richard I."
    waiting = attribute("Who founded the abbey of Fecamp?", answer, [normans], lambda q, s: None, FITTED)
    asked = []
    measured = attribute("Who founded the abbey of Fecamp?", answer, [normans],
                         lambda q, s: asked.append((q, s)) or 0.9, FITTED)
    assert waiting.signals["similarity"] == 0.5 and measured.signals["similarity"] == 0.9
    assert asked == [("Who founded the abbey of Fecamp?", measured.sources[0].quote)]
    assert measured.confidence > waiting.confidence  # closer to the question, more likely right


def test_specifics_are_numbers_dates_and_names_as_written():
    assert verdict.specifics("In the 1050s Herve paid 30,000 men; order KX-48213 on 14 March.") == [
        "1050s", "Herve", "30,000", "KX-48213", "14", "March"]
    assert verdict.specifics("The answer is 1066.") == ["1066"]


def test_the_rule_before_the_model_decides_not_found_and_the_thresholds_the_rest():
    held = verdict.Signals(support=1.0, overall=1.0, relevance=1.0, question_here=1.0, colocated=1.0,
                           specifics_away=0.0, restates=0.0, similarity=0.8)
    elsewhere = verdict.Signals(**{**held.to_dict(), "relevance": 0.0})  # the answer's words away from the question
    unheld = verdict.Signals(**{**held.to_dict(), "support": 0.1})
    assert verdict.ruled_out(elsewhere) and verdict.ruled_out(unheld) and not verdict.ruled_out(held)
    weights = SMOLLM2.intercept, SMOLLM2.coefficients
    p = verdict.probability(held, *weights)
    assert verdict.judge(elsewhere, 0.99, 0.5, 0.0) == verdict.judge(unheld, 0.99, 0.5, 0.0) == "not_found"
    assert verdict.judge(held, p, supported_at=p, not_found_below=0.0) == "supported"
    assert verdict.judge(held, p, supported_at=p + 0.01, not_found_below=p) == "partial"
    assert verdict.judge(held, p, supported_at=1.0, not_found_below=p + 0.01) == "not_found"
    assert p > verdict.probability(verdict.Signals(**{**held.to_dict(), "colocated": 0.3}), *weights)
