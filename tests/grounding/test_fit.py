"""The verdict's fit (``backend.grounding.fit``) and the calibration command (``python -m
backend.grounding.calibrate``): folds of whole articles, thresholds that keep their promises, figures with
intervals; and the command end to end on the real SmolLM2 and the shared SQuAD 2.0 tuning articles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backend.grounding import fit, read_calibration
from backend.grounding.calibrate import calibrate
from backend.grounding.tuning import SHARED_TUNING, contains_gold, normalize, tuning_questions
from backend.grounding.verdict import Signals
from backend.inference import model_identity

ROOT = Path(__file__).resolve().parents[2]


def answer(article: str, group: str, support: float, grounding: str = "partial") -> fit.Graded:
    """An answer whose signals all equal ``support`` (a right one is better supported, as in real answers)."""
    return fit.Graded(article, group, Signals(support, support, support, support, support, 0.0, 0.0, support),
                      grounding)


def answers_of(articles: int = 6, per: int = 20) -> list[fit.Graded]:
    """Per article: right answers with high signals, wrong and unanswerable ones with low, a few of each crossing
    over, so the fit has something to learn and something to get wrong."""
    out = []
    for a in range(articles):
        for i in range(per):
            out.append(answer(f"art{a}", "right", 0.55 + 0.4 * (i / per) if i % 7 else 0.3))
            out.append(answer(f"art{a}", "wrong", 0.2 + 0.3 * (i / per) if i % 5 else 0.9))
            out.append(answer(f"art{a}", "unanswerable", 0.18 + 0.3 * (i / per)))
    return out


def test_folds_split_whole_articles_and_cover_each_once():
    graded = answers_of(articles=7, per=2)
    folds = fit.folds_of(graded, 3)
    flat = [t for group in folds for t in group]
    assert len(folds) == 3 and sorted(flat) == sorted({g.article for g in graded}) and len(flat) == len(set(flat))
    assert fit.folds_of(graded[:6], 4) == [["art0"]], "one article: one group, nothing to hold out"
    with pytest.raises(ValueError, match="at least two"):
        fit.cross_validate(graded[:6], 4)


def test_each_answer_is_judged_by_a_fit_that_never_saw_its_article():
    graded = answers_of()
    verdicts, probs = fit.cross_validate(graded, 3)
    held = fit.folds_of(graded, 3)[0]
    alone = fit.fit([g for g in graded if g.article not in held])
    for g, v, p in zip(graded, verdicts, probs):
        if g.article in held:
            assert (v, p) == (alone.judge(g), alone.probability(g))


def test_thresholds_keep_their_promises_on_the_fit():
    graded = answers_of()
    params = fit.fit(graded)
    ticked = [g for g in graded if params.judge(g) == "supported"]
    assert len(ticked) >= 10 and sum(g.group == "right" for g in ticked) / len(ticked) >= fit.PRECISION_GOAL
    answerable = [g for g in graded if g.group != "unanswerable"]
    flagged = sum(params.judge(g) == "not_found" for g in answerable)
    assert flagged / len(answerable) <= fit.FALSE_NOT_FOUND_CAP
    assert sum(params.judge(g) == "not_found" for g in graded if g.group == "unanswerable") > 0


def test_no_threshold_reaches_the_precision_then_no_check_mark():
    assert fit.supported_threshold([0.9, 0.8, 0.7] * 5, [True, False, False] * 5) == 1.0
    assert fit.supported_threshold([0.99 - i / 100 for i in range(12)], [True] * 11 + [False]) == pytest.approx(0.89)
    assert fit.supported_threshold([0.9] * 13 + [0.5] * 30, [True] * 11 + [False] * 32) == 1.0, "a tie ticks all"


def test_figures_count_each_group_with_intervals():
    graded = [answer("a", "right", 0.9), answer("a", "wrong", 0.5), answer("b", "unanswerable", 0.1),
              answer("b", "unanswerable", 0.1)]
    out = fit.figures(graded, ["supported", "supported", "not_found", "partial"])
    assert out["supported_precision"] == 0.5 and out["supported_precision_counts"] == [1, 2]
    assert out["not_found_recall"] == 0.5 and out["not_found_false_rate"] == 0.0
    assert out["answerable_accuracy"] == 0.5 and out["answers"] == 4
    low, high = out["not_found_recall_ci"]
    assert 0 < low < 0.5 < high < 1
    assert fit.figures(graded[:2], ["partial", "partial"])["supported_precision"] is None


def test_fit_refuses_answers_it_cannot_learn_from():
    with pytest.raises(ValueError, match="too few to fit"):
        fit.fit([answer("a", "wrong", 0.5)] * 5)


def test_grading_uses_squads_normalisation():
    assert normalize("The  Normans!") == "normans"
    assert contains_gold("It was the Normans, in 911.", ("Normans",))
    assert not contains_gold("Vikings", ("Normans",)) and not contains_gold("anything", ())


def test_tuning_questions_come_from_the_kept_paragraphs():
    docs, questions = tuning_questions(SHARED_TUNING, 2, 3, 2, 800, lambda text: len(text.split()))
    assert [t for t, _ in docs] == ["Normans", "Computational complexity theory"]
    assert len(questions) == 10 and {q.kind for q in questions} == {"answerable", "adversarial"}
    for q in questions:
        assert q.paragraph in dict(docs)[q.title]
        assert (not q.golds) == (q.kind == "adversarial")
    with pytest.raises(ValueError, match="--tuning"):
        tuning_questions(ROOT / "README.md", 1, 1, 1, 100, len)


@pytest.mark.slow
def test_the_command_calibrates_the_real_model_and_refits_from_its_answers(tmp_path, smollm2):
    out, kept = tmp_path / "cal.json", tmp_path / "answers.json"
    command = [sys.executable, "-m", "backend.grounding.calibrate", "--model", str(smollm2), "--out", str(out),
               "--answers", str(kept), "--articles", "3", "--per-article", "5", "--unanswerable", "2",
               "--doc-tokens", "800", "--folds", "3"]
    run = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "| ✓ given to the top" in run.stdout and "not_found_false_rate" in run.stdout
    written = read_calibration(out)
    assert written.fingerprint == model_identity(smollm2)
    held = written.held_out
    assert held["answers"] == 21 and held["folds"] == 3 and len(held["articles"]) == 3
    assert held["answerable_accuracy_counts"][1] == 15 and held["not_found_recall_counts"][1] == 6
    answers = json.loads(kept.read_text(encoding="utf-8"))
    assert len(answers) == 21 and all("signals" in a and "answer" in a for a in answers)
    again = calibrate(answers, written.model, written.fingerprint, written.tuning_set, 3)
    assert (again.intercept, again.coefficients, again.held_out) == (written.intercept, written.coefficients, held)
