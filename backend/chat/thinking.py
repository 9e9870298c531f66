"""Splitting a streamed answer into thinking and answer text: ``<think>…</think>`` as Qwen3,
DeepSeek-R1 and their kin emit it.

Tags arrive split across tokens (``<th`` + ``ink>``), so the splitter holds back any tail that
could still become a tag and decides once the next piece shows whether it did. Checking one
token at a time for a whole tag misses those.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _partial_tag_len(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Incremental parser: ``feed`` text pieces, get ``("thinking" | "answer", text)`` parts back.

    The newlines a model puts right after ``</think>`` are dropped from the answer, and a
    ``<think>`` that only opens at the very start is not required: text before any tag is answer.
    """

    def __init__(self):
        self._buffer = ""
        self._thinking = False
        self._after_close = False
        self.thinking_text = ""
        self.answer_text = ""

    def _emit(self, text: str, out: list[tuple[str, str]]) -> None:
        if self._thinking:
            self.thinking_text += text
            out.append(("thinking", text))
            return
        if self._after_close:
            text = text.lstrip("\n")
            self._after_close = not text  # keep stripping until the answer really starts
        if text:
            self.answer_text += text
            out.append(("answer", text))

    def feed(self, piece: str) -> list[tuple[str, str]]:
        """Take the next piece of the stream.

        Returns:
            The parts that are now certain, in order (possibly none, while a tag may be forming).
        """
        out: list[tuple[str, str]] = []
        self._buffer += piece
        while True:
            tag = CLOSE if self._thinking else OPEN
            at = self._buffer.find(tag)
            if at < 0:
                keep = _partial_tag_len(self._buffer, tag)
                ready, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep:]
                if ready:
                    self._emit(ready, out)
                return out
            if at:
                self._emit(self._buffer[:at], out)
            self._buffer = self._buffer[at + len(tag):]
            self._after_close = self._thinking
            self._thinking = not self._thinking

    def close(self) -> list[tuple[str, str]]:
        """The stream ended: whatever is held back is plain text of the current part."""
        out: list[tuple[str, str]] = []
        if self._buffer:
            self._emit(self._buffer, out)
            self._buffer = ""
        return out


def split_thinking(text: str) -> tuple[str, str]:
    """``(thinking, answer)`` of a whole text."""
    splitter = ThinkSplitter()
    splitter.feed(text)
    splitter.close()
    return splitter.thinking_text, splitter.answer_text
