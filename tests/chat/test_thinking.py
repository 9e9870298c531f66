"""The think-tag splitter, with the stream cut at every possible byte boundary."""

from __future__ import annotations

import codecs
import itertools

import pytest

from backend.chat import ThinkSplitter, split_thinking

CASES = [
    # (streamed text, thinking, answer)
    ("<think>\nThe user asks about Äpfel; größer → 2×.\n</think>\n\nÄpfel sind größer ✓.",
     "\nThe user asks about Äpfel; größer → 2×.\n", "Äpfel sind größer ✓."),
    ("<think>\n\n</think>\n\nNo thinking at all.", "\n\n", "No thinking at all."),
    ("A plain answer with a < sign and <b>tags</b> and </thin but no think tag.", "",
     "A plain answer with a < sign and <b>tags</b> and </thin but no think tag."),
    ("<think>a <thin> in thinking</think>tail <think", "a <thin> in thinking", "tail <think"),
]


def stream(text: str, cuts: tuple[int, ...]) -> tuple[str, str]:
    """Feed ``text``'s UTF-8 bytes cut at ``cuts``, decoded incrementally as the engine does."""
    data, splitter = text.encode("utf-8"), ThinkSplitter()
    decoder = codecs.getincrementaldecoder("utf-8")()
    bounds = [0, *cuts, len(data)]
    parts = []
    for a, b in itertools.pairwise(bounds):
        parts += splitter.feed(decoder.decode(data[a:b]))
    parts += splitter.feed(decoder.decode(b"", final=True)) + splitter.close()
    thinking = "".join(t for kind, t in parts if kind == "thinking")
    answer = "".join(t for kind, t in parts if kind == "answer")
    assert (thinking, answer) == (splitter.thinking_text, splitter.answer_text)
    return thinking, answer


@pytest.mark.parametrize("text, thinking, answer", CASES)
def test_every_single_and_double_byte_cut_gives_exact_texts(text, thinking, answer):
    n = len(text.encode("utf-8"))
    assert split_thinking(text) == (thinking, answer)
    for cut in range(1, n):
        assert stream(text, (cut,)) == (thinking, answer), cut
    for cuts in itertools.combinations(range(1, min(n, 48)), 2):  # two cuts inside the tags' region
        assert stream(text, cuts) == (thinking, answer), cuts


@pytest.mark.parametrize("text, thinking, answer", CASES)
def test_one_byte_at_a_time(text, thinking, answer):
    assert stream(text, tuple(range(1, len(text.encode("utf-8"))))) == (thinking, answer)
