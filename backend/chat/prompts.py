"""Prompt layout and token budgets.

Layout (the model's own chat template renders it)::

    system:   fixed instructions                               \
    user:     "Context:" + the documents' text + "Question:"   /  cached prefix (CAG)
              + the first question
    ...history turns, oldest trimmed first...
    user:     [retrieved chunks (RAG)] + the question
    assistant: <generation>

The documents open the first user message (``Frame.opening``), the question follows its
``Question:`` cue: laid out so, the bundled SmolLM2 reads a cached paragraph as well as a plain
prompt of the paragraph and the question, where with the documents in the system message it fell
behind (``benchmarks/layouts.py``: 0.459 against 0.394 contains-gold on 320 SQuAD questions).
The cached prefix is everything the template emits before the first question's text, so it
depends only on the instructions and the documents. Prefix and suffix are tokenized separately
and concatenated, so the prefix tokens are identical on every turn no matter how the tokenizer
would merge across the boundary; the boundary sits before the space that starts the question,
where a BPE tokenizer splits anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.documents import DocText, Hit
from backend.inference import Engine, open_first_user
from backend.kvcache import Splice

_PROBES = ("\x01", "\x02")  # two user contents that differ in their first character


@dataclass(frozen=True)
class Prompt:
    """A rendered, tokenized prompt.

    Attributes:
        prefix_tokens: the cacheable prefix (instructions + documents), token ids.
        tokens: the whole prompt; ``tokens[:len(prefix_tokens)] == prefix_tokens``.
        history_messages: how many earlier messages made it into the prompt.
        history_tokens: tokens those messages take (with their template tokens).
        text: the rendered text ``tokens`` stand for.
        spliced_tokens: leading tokens taken as is from the session's previous context
            (``Splice``) instead of re-tokenizing their text; 0 when none.
        prefix_chars: characters of ``text`` that ``prefix_tokens`` stand for (the rest was tokenized on
            its own, so it can be tokenized again with images in it).
    """

    prefix_tokens: list[int]
    tokens: list[int]
    history_messages: int = 0
    history_tokens: int = 0
    text: str = ""
    spliced_tokens: int = 0
    prefix_chars: int = 0

    @property
    def n_prefix(self) -> int:
        """Tokens in the cacheable prefix."""
        return len(self.prefix_tokens)

    @property
    def n_tokens(self) -> int:
        """Tokens in the whole prompt."""
        return len(self.tokens)


@dataclass(frozen=True)
class Frame:
    """What every prompt of a conversation starts with, all of it in the cached prefix.

    Attributes:
        system: the system message (the instructions).
        opening: text that opens the first user message: the documents between a ``Context:`` and
            a ``Question:`` cue ("" when there are none). ``open_first_user`` places it.
    """

    system: str
    opening: str = ""

    def messages(self, conversation: list[dict[str, str]]) -> list[dict[str, str]]:
        """The system message, then ``conversation`` with the opening at the start of its first user message."""
        return open_first_user([{"role": "system", "content": self.system}, *conversation], self.opening)


def document_block(doc: DocText) -> str:
    """One document as the prompt shows it: a Markdown heading with its name, then its text."""
    return f"# {doc.name}\n\n{doc.text}"


def frame(instructions: str, docs: list[DocText]) -> Frame:
    """The frame for these documents: the instructions as the system message; the documents, each
    under its heading, opening the first user message between ``Context:`` and ``Question:``.

    Args:
        instructions: fixed system instructions.
        docs: documents in the order the user selected them.

    Returns:
        The frame; identical for identical inputs.
    """
    if not docs:
        return Frame(instructions)
    return Frame(instructions, "Context:\n\n" + "\n\n".join(document_block(d) for d in docs) + "\n\nQuestion:")


def chunk_frame(instructions: str, hits: list[Hit]) -> Frame:
    """The frame of a RAG turn whose chunks are its cached prefix: each chunk as a document named by
    its document, page and section. A chunk always renders to the same block, so the prefix the
    Cache button saves for it (``Primer.cache_chunks``) is the one a question restores.

    Args:
        instructions: fixed system instructions.
        hits: the chunks, best first.
    """
    docs = [DocText(h.doc_id, f"{h.name} (page {h.page}{f', {h.section}' if h.section else ''})", h.text)
            for h in hits]
    return frame(instructions, docs)


def rag_user_text(question: str, hits: list[Hit]) -> str:
    """The user turn of a RAG answer: numbered excerpts, then the question."""
    if not hits:
        return question
    excerpts = "\n\n".join(f"[{i}] {h.name}, page {h.page}{f' ({h.section})' if h.section else ''}:\n{h.text}"
                             for i, h in enumerate(hits, 1))
    return f"Excerpts from the user's documents:\n\n{excerpts}\n\nQuestion: {question}"


def prefix_text(engine: Engine, frame: Frame) -> str:
    """The rendered text shared by every conversation that starts with this frame: up to the
    first question's text, less the space before it (it goes with the question's first word)."""
    a, b = (engine.render(frame.messages([{"role": "user", "content": p}])) for p in _PROBES)
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n].rstrip(" ")


def prefix_tokens(engine: Engine, frame: Frame) -> list[int]:
    """Token ids of the cacheable prefix for a frame."""
    return engine.tokenize(prefix_text(engine, frame), add_bos=True)


def build_prompt(engine: Engine, frame: Frame, history: list[dict], user: str, *,
                 history_budget_tokens: int, max_tokens: int, splice: Splice | None = None) -> Prompt | None:
    """Lay out a prompt, trimming the oldest history to fit the budgets.

    Args:
        engine: the loaded engine (template, tokenizer, ``n_ctx``).
        frame: the instructions and documents (see ``frame``).
        history: earlier ``{"role", "content"}`` messages, oldest first.
        user: this turn's user message.
        history_budget_tokens: most tokens earlier messages may take.
        max_tokens: tokens reserved for the answer.
        splice: the session's previous context; used when the rendered text starts with its text
            and its tokens start with this prefix.

    Returns:
        The prompt, or None when even with no history it exceeds ``n_ctx - max_tokens``.
    """
    pre_text = prefix_text(engine, frame)
    pre_tokens = engine.tokenize(pre_text, add_bos=True)
    limit = engine.n_ctx - max_tokens
    usable = splice is not None and list(splice.tokens[: len(pre_tokens)]) == pre_tokens

    def tokens_with(recent: list[dict]) -> tuple[str, list[int], int]:
        full = engine.render(frame.messages([*recent, {"role": "user", "content": user}]))
        if not full.startswith(pre_text):
            raise ValueError("the chat template does not render a stable prefix for these instructions and documents")
        if usable and len(splice.text) >= len(pre_text) and full.startswith(splice.text):
            return full, [*splice.tokens, *engine.tokenize(full[len(splice.text):])], len(splice.tokens)
        return full, pre_tokens + engine.tokenize(full[len(pre_text):]), 0

    bare_text, bare, _ = tokens_with([])
    if len(bare) > limit:
        return None
    start = len(history) % 2  # keep whole user/assistant pairs
    for first in range(start, len(history), 2):
        text, tokens, spliced = tokens_with(history[first:])
        if len(tokens) <= limit and len(tokens) - len(bare) <= history_budget_tokens:
            return Prompt(pre_tokens, tokens, len(history) - first, len(tokens) - len(bare), text, spliced,
                          len(pre_text))
    return Prompt(pre_tokens, bare, 0, 0, bare_text, 0, len(pre_text))
