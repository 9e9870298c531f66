"""Auto's rule (whole documents or retrieval, by the model's size and the document's length) and the date
line's rule (only questions about time), without a model."""

from __future__ import annotations

import pytest

from backend.chat.modes import SIZE_RULE, auto_reason, cag_limit
from backend.chat.turn_input import asks_about_time, compose
from backend.config import Settings


def test_the_cag_limit_comes_from_the_setting_else_the_size_rule_else_none():
    assert cag_limit(2000, 135_000_000).tokens == 2000 and cag_limit(2000, 0).source == "setting"
    small = cag_limit(None, 135_000_000)
    assert (small.tokens, small.source) == (SIZE_RULE[0][1], "size rule") and "135M parameters" in small.describe()
    assert cag_limit(None, 600_000_000).tokens == SIZE_RULE[1][1]
    assert cag_limit(None, 8_000_000_000).tokens is None  # past the last band: whatever fits n_ctx
    assert cag_limit(None, 0).tokens is None  # a remote server: size unknown


def test_auto_reads_whole_within_the_limit_and_retrieves_past_it_or_past_n_ctx():
    limit = cag_limit(None, 135_000_000)
    mode, why = auto_reason(limit.tokens, 8192, limit)
    assert mode == "cag" and "read whole" in why
    mode, why = auto_reason(limit.tokens + 1, 8192, limit)
    assert mode == "rag" and f"more than the {limit.tokens:,}" in why and "135M" in why
    mode, why = auto_reason(None, 8192, limit)
    assert mode == "rag" and "do not fit n_ctx 8,192" in why
    assert auto_reason(50_000, 65536, cag_limit(None, 0))[0] == "cag"


ABOUT_TIME = ["What day is it today?", "What is the current price?", "How many years ago was it built?",
              "Is the keeper still alive?", "What happens this year?", "How long has it been since 2015?",
              "What time is it now?", "What is the date?"]
TIMELESS = ["Who built the lighthouse?", "How tall is the lighthouse?", "When was it built?",
            "What happened in 1887?", "How long is the bridge?",
            "What did the 2015 report say?", "Who won the war in 1943?", "What happened on May 5?",
            "What year was the lighthouse built?", "What time did the ferry leave?"]


@pytest.mark.parametrize("question", ABOUT_TIME)
def test_questions_about_time_get_the_date_line(question):
    assert asks_about_time(question)
    sent = compose(Settings(), None, "local", "s", question, now=1796119200.0).sent
    assert sent.startswith("[") and "2026" in sent.splitlines()[0] and sent.endswith(question)


@pytest.mark.parametrize("question", TIMELESS)
def test_other_questions_are_sent_as_typed(question):
    assert not asks_about_time(question)
    assert compose(Settings(), None, "local", "s", question, now=1796119200.0).sent == question
    assert compose(Settings(turn_datetime="on"), None, "local", "s", question, now=1796119200.0).sent != question


def test_turn_datetime_takes_its_old_boolean_form():
    assert [Settings(turn_datetime=v).turn_datetime for v in (True, False, "true", "off", "auto")] == \
        ["on", "off", "on", "off", "auto"]
