"""Prompt layout and token budgets.

Layout (the model's own chat template renders it)::

    system:   fixed instructions + the documents' text      <- cached prefix (CAG)
    ...history turns, oldest trimmed first...
    user:     [retrieved chunks (RAG)] + the question
    assistant: <generation>

The cached prefix is everything the template emits before the first non-system message's
content, so it depends only on the instructions and the documents. Prefix and suffix are
tokenized separately and concatenated, so the prefix tokens are identical on every turn no
matter how the tokenizer would merge across the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.documents import DocText, Hit
from backend.inference import Engine
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
    """

    prefix_tokens: list[int]
    tokens: list[int]
    history_messages: int = 0
    history_tokens: int = 0
    text: str = ""
    spliced_tokens: int = 0

    @property
    def n_prefix(self) -> int:
        """Tokens in the cacheable prefix."""
        return len(self.prefix_tokens)

    @property
    def n_tokens(self) -> int:
        """Tokens in the whole prompt."""
        return len(self.tokens)


def document_block(doc: DocText) -> str:
    """One document as the prompt shows it: its text in a ``<document name="...">`` block."""
    return f'<document name="{doc.name}">\n{doc.text}\n</document>'


def system_text(instructions: str, docs: list[DocText]) -> str:
    """The system message: instructions, then each document in a tagged block.

    Args:
        instructions: fixed system instructions.
        docs: documents in the order the user selected them.

    Returns:
        The system message content; identical for identical inputs.
    """
    if not docs:
        return instructions
    return instructions + "\n\nThe user's documents:\n\n" + "\n\n".join(document_block(d) for d in docs)


def chunk_system_text(instructions: str, hits: list[Hit]) -> str:
    """The system message of a RAG turn whose chunks are its cached prefix: each chunk as a document
    block named by its document, page and section. A chunk always renders to the same block, so the
    prefix the Cache button saves for it (``Primer.cache_chunks``) is the one a question restores.

    Args:
        instructions: fixed system instructions.
        hits: the chunks, best first.
    """
    docs = [DocText(h.doc_id, f"{h.name} (page {h.page}{f', {h.section}' if h.section else ''})", h.text)
            for h in hits]
    return system_text(instructions, docs)


def rag_user_text(question: str, hits: list[Hit]) -> str:
    """The user turn of a RAG answer: numbered excerpts, then the question."""
    if not hits:
        return question
    excerpts = "\n\n".join(f"[{i}] {h.name}, page {h.page}{f' ({h.section})' if h.section else ''}:\n{h.text}"
                             for i, h in enumerate(hits, 1))
    return f"Excerpts from the user's documents:\n\n{excerpts}\n\nQuestion: {question}"


def prefix_text(engine: Engine, system: str) -> str:
    """The rendered text shared by every conversation that starts with this system message."""
    a, b = (engine.render([{"role": "system", "content": system}, {"role": "user", "content": p}]) for p in _PROBES)
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def prefix_tokens(engine: Engine, system: str) -> list[int]:
    """Token ids of the cacheable prefix for a system message."""
    return engine.tokenize(prefix_text(engine, system), add_bos=True)


def build_prompt(engine: Engine, system: str, history: list[dict], user: str, *,
                 history_budget_tokens: int, max_tokens: int, splice: Splice | None = None) -> Prompt | None:
    """Lay out a prompt, trimming the oldest history to fit the budgets.

    Args:
        engine: the loaded engine (template, tokenizer, ``n_ctx``).
        system: the system message (see ``system_text``).
        history: earlier ``{"role", "content"}`` messages, oldest first.
        user: this turn's user message.
        history_budget_tokens: most tokens earlier messages may take.
        max_tokens: tokens reserved for the answer.
        splice: the session's previous context; used when the rendered text starts with its text
            and its tokens start with this prefix.

    Returns:
        The prompt, or None when even with no history it exceeds ``n_ctx - max_tokens``.
    """
    pre_text = prefix_text(engine, system)
    pre_tokens = engine.tokenize(pre_text, add_bos=True)
    limit = engine.n_ctx - max_tokens
    usable = splice is not None and list(splice.tokens[: len(pre_tokens)]) == pre_tokens

    def tokens_with(recent: list[dict]) -> tuple[str, list[int], int]:
        full = engine.render([{"role": "system", "content": system}, *recent, {"role": "user", "content": user}])
        if not full.startswith(pre_text):
            raise ValueError("the chat template does not render a stable prefix for this system message")
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
            return Prompt(pre_tokens, tokens, len(history) - first, len(tokens) - len(bare), text, spliced)
    return Prompt(pre_tokens, bare, 0, 0, bare_text, 0)
