"""The prompt layout on the real SmolLM2 tokenizer and ChatML template: the documents open the first
user message, the cached prefix ends at its "Question:" cue, and tokenizing prefix and rest apart
gives the tokens a tokenizer gives the whole text."""

from __future__ import annotations

import pytest

from backend.chat import build_prompt, frame, prefix_tokens
from backend.documents import DocText
from backend.inference import Engine, LoadParams

DOCS = [DocText("d1", "vellmora.md", "The keeper of the lighthouse is named Tobias Brennick."),
        DocText("d2", "festival.txt", "The Lantern Festival is held on the first of May.")]
HISTORY = [{"role": "user", "content": "Who keeps the lighthouse?"},
           {"role": "assistant", "content": "Tobias Brennick."}]


@pytest.fixture(scope="module")
def engine(smollm2) -> Engine:
    engine = Engine()
    engine.load(smollm2, LoadParams(n_ctx=2048, n_threads=1, use_extra_bufts=False))
    yield engine
    engine.unload()


def test_documents_open_the_first_user_message_and_the_prefix_ends_at_the_question_cue(engine):
    head = frame("Answer from the documents.", DOCS)
    prompt = build_prompt(engine, head, [], "When is the festival?", history_budget_tokens=512, max_tokens=48)
    assert prompt.text.startswith("<|im_start|>system\nAnswer from the documents.<|im_end|>\n<|im_start|>user\n"
                                  "Context:\n\n# vellmora.md\n\nThe keeper")
    assert "# festival.txt\n\nThe Lantern Festival" in prompt.text
    assert engine.llm.detokenize(prompt.prefix_tokens).decode().endswith("first of May.\n\nQuestion:")
    assert prompt.text.endswith("Question: When is the festival?<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.tokens == engine.tokenize(prompt.text, add_bos=True), "split tokenization = joint"


def test_later_questions_keep_the_prefix_and_stand_in_their_own_user_message(engine):
    head = frame("Answer from the documents.", DOCS)
    first = build_prompt(engine, head, [], HISTORY[0]["content"], history_budget_tokens=512, max_tokens=48)
    second = build_prompt(engine, head, HISTORY, "And the festival?", history_budget_tokens=512, max_tokens=48)
    assert second.prefix_tokens == first.prefix_tokens == prefix_tokens(engine, head)
    assert second.tokens[:first.n_tokens] == first.tokens, "the first turn's prompt is reused token for token"
    assert second.history_messages == 2
    assert second.text.count("Context:") == 1
    assert second.text.endswith("<|im_start|>user\nAnd the festival?<|im_end|>\n<|im_start|>assistant\n")
    assert second.tokens == engine.tokenize(second.text, add_bos=True)


def test_trimmed_history_moves_the_documents_to_the_oldest_kept_question(engine):
    head = frame("Answer from the documents.", DOCS)
    trimmed = build_prompt(engine, head, HISTORY, "And the festival?", history_budget_tokens=0, max_tokens=48)
    assert trimmed.history_messages == 0
    assert trimmed.prefix_tokens == prefix_tokens(engine, head)
    assert "Question: And the festival?<|im_end|>" in trimmed.text
    assert "Who keeps" not in trimmed.text


def test_no_documents_leaves_the_question_alone(engine):
    prompt = build_prompt(engine, frame("Be brief.", []), [], "Hello?", history_budget_tokens=0, max_tokens=8)
    assert prompt.text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello?<|im_end|>\n" \
                          "<|im_start|>assistant\n"
