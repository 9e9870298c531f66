"""A verdict calibrated for the model that answers (issue 43): each model's coefficients and thresholds in a JSON
keyed by its file's fingerprint; ✓ only where the held-out precision is at least 0.9, the verdict's ⚠ only where
its held-out false rate is at most 0.15; a model without a calibration gets ◐ and its sources, and the two ⚠ that
do not depend on the model (the answer abstains, the question names what the documents never do) stay."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from chat.test_real_answers import FACTS
from grounding.test_verdict import SMOLLM2

from backend.documents import extract
from backend.grounding import PassageIndex, attribute, calibration_for, passages_of, read_calibration
from backend.grounding.attribution import UNCALIBRATED
from backend.inference import bundled_path, model_identity

QUESTION = "Who built the Harbor Lighthouse of Vellmora?"
RIGHT = "The Harbor Lighthouse of Vellmora was built by the engineer Odile Marchetti."


@pytest.fixture(scope="module")
def facts() -> PassageIndex:
    return PassageIndex.build(passages_of("d1", "vellmora.md", extract(FACTS.encode(), "vellmora.md").pages))


def test_the_bundled_models_calibration_is_found_by_its_fingerprint_and_allows_what_its_figures_allow(smollm2):
    found = calibration_for(model_identity(smollm2))
    assert found is not None and found.fingerprint == model_identity(bundled_path("models"))
    assert found.coefficients == SMOLLM2.coefficients and found.held_out["folds"] == 4
    assert not found.shows_supported and found.shows_not_found  # held out: no ✓ threshold; ⚠ on 30 of 200 answerable
    assert "✓ off" in found.summary() and "⚠ shown (held-out false rate 0.15)" in found.summary()


def test_a_model_without_a_calibration_never_shows_a_check_mark_and_keeps_the_model_free_not_found(tiny_model, facts):
    assert calibration_for(model_identity(tiny_model)) is None and calibration_for(None) is None
    found = attribute(QUESTION, RIGHT, [facts])
    assert found.grounding == "partial" and found.sources and found.note == UNCALIBRATED and found.confidence == 0
    assert found.signals["support"] == 1.0  # measured all the same (a later calibration fits on them)
    abstained = attribute("What is the price of oil?", "The document does not mention the price of oil.", [facts])
    never_named = attribute("Who built the Harbor Lighthouse of Normandy?", "Odile Marchetti built it.", [facts])
    assert abstained.grounding == never_named.grounding == "not_found"


def test_each_mark_is_shown_only_where_the_held_out_figures_allow_it(facts):
    ticks = replace(SMOLLM2, supported_at=0.0, not_found_below=1.0)  # every modelled answer ✓ on the threshold
    for precision, shown in ((0.95, "supported"), (0.89, "partial"), (None, "partial")):
        calibration = replace(ticks, held_out={"supported_precision": precision, "not_found_false_rate": 0.5})
        assert attribute(QUESTION, RIGHT, [facts], calibration=calibration).grounding == shown, precision
    doubting = replace(SMOLLM2, supported_at=1.0, not_found_below=1.0)  # every modelled answer ⚠ on the threshold
    for rate, shown in ((0.10, "not_found"), (0.15, "not_found"), (0.18, "partial"), (None, "partial")):
        calibration = replace(doubting, held_out={"supported_precision": None, "not_found_false_rate": rate})
        assert attribute(QUESTION, RIGHT, [facts], calibration=calibration).grounding == shown, rate


def test_a_calibration_in_the_models_folder_is_read_and_a_broken_one_is_skipped(tmp_path, caplog, facts):
    folder = tmp_path / "calibrations"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    mine = replace(SMOLLM2, model="mine", fingerprint="ab" * 32, held_out={"supported_precision": 0.93,
                                                                         "not_found_false_rate": 0.05})
    with caplog.at_level(logging.WARNING):
        assert calibration_for("ab" * 32, (folder,)) is None
        (folder / "mine.json").write_text(mine.to_json(), encoding="utf-8")
        found = calibration_for("ab" * 32, (folder,))
    assert found == replace(mine, source=str(folder / "mine.json")) and found.shows_supported and found.shows_not_found
    assert read_calibration(folder / "mine.json").summary().startswith("calibrated on SQuAD 2.0")
    assert "broken.json is not a verdict calibration" in caplog.text
    with pytest.raises(ValueError, match="is not a verdict calibration"):
        read_calibration(folder / "broken.json")


def test_every_shipped_calibration_reads_and_each_mark_follows_its_held_out_figures():
    """Both bundled models' calibrations ship (Qwen2.5-Coder's fingerprint is checked where its 491 MB file is present:
    ``bash scripts/setup.sh`` puts it there, ``--test`` does not)."""
    from backend.grounding.calibration import SHIPPED
    from backend.inference.bundled import QWEN_CODER

    shipped = {path.name: read_calibration(path) for path in sorted(SHIPPED.glob("*.json"))}
    assert {"smollm2-135m-instruct-q4_1.json", "qwen2.5-coder-0.5b-instruct-q4_k_m.json"} <= set(shipped)
    for cal in shipped.values():
        held = cal.held_out
        assert cal.shows_not_found == (held["not_found_false_rate"] <= 0.15)
        assert cal.shows_supported == (held["supported_precision"] is not None and held["supported_precision"] >= 0.9)
        # calibrate's held-out folds: every article held out once, every answer judged by a fit that never saw it
        assert len(held["articles"]) == len(set(held["articles"])) >= held["folds"] >= 2
        assert held["answerable_accuracy_counts"][1] + held["not_found_recall_counts"][1] == held["answers"] >= 300
        low, high = held["not_found_false_rate_ci"]
        assert low <= held["not_found_false_rate"] <= high
    qwen = shipped["qwen2.5-coder-0.5b-instruct-q4_k_m.json"]
    assert qwen.shows_not_found and not qwen.shows_supported  # held out: ⚠ false rate 0.12, no ✓ threshold reached
    # the reader's yes or no is asked where the probability decides a mark shown: Qwen's ⚠ below 0.19; SmolLM2's ⚠
    # comes from the rules alone (not_found_below 0), so its answers are never kept waiting for it
    smollm2 = shipped["smollm2-135m-instruct-q4_1.json"]
    assert qwen.weighs("reader_yes") and qwen.coefficients["reader_yes"] > 0
    assert smollm2.not_found_below == 0.0 and smollm2.supported_at == 1.0 and not smollm2.weighs("reader_yes")
    path = bundled_path("models", QWEN_CODER)
    if path.is_file():
        assert calibration_for(model_identity(path)) == qwen
