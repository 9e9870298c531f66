"""Token-aware chunking aligned to paragraphs: a chunk is one paragraph (short ones joined to the
next), and only a paragraph longer than the window is cut into overlapping windows.

Paragraphs are the text between blank lines. Whole paragraphs make better retrieval units and
better context for the model than fixed windows, which cut answers in half (issue 13: answers were
lost at chunk boundaries); a RAG turn caches each chunk's KV state, so a chunk is also a unit of
reuse. Windows are cut on the embedding tokenizer's own token offsets, so no chunk exceeds the
model's ``max_seq_length`` (text past it would be silently truncated by the encoder and never be
searchable), and every chunk is an exact slice of its page's text.

What gets embedded is the chunk preceded by a context line (document title and section), as
DPR encodes "title [SEP] passage" (Karpukhin et al., 2020); the context line only uses the room
the chunk leaves, so the chunk itself is never cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from backend.documents.extract import Page


@dataclass(frozen=True)
class Chunk:
    """A retrievable slice of a document.

    Attributes:
        doc_id: the owning document's id.
        index: 0-based position of the chunk in the document.
        page: 1-based page the chunk starts on.
        section: heading path of the section it comes from, ``""`` if none.
        text: the chunk's text.
        n_tokens: its length in embedding-model tokens.
        ocr: its page's text was read by OCR.
    """

    doc_id: str
    index: int
    page: int
    section: str
    text: str
    n_tokens: int
    ocr: bool = False


_PARAGRAPH = re.compile(r"\S(?:.*?\S)??(?=\s*\n[ \t]*\n|\s*$)", re.DOTALL)


def chunk_pages(pages: list[Page], doc_id: str, tokenizer, chunk_tokens: int, overlap_tokens: int,
                max_seq_length: int | None = None) -> list[Chunk]:
    """Split pages into paragraph-aligned chunks.

    Consecutive paragraphs are joined while the chunk is shorter than a quarter of the window
    (a heading or a one-line item joins what follows); a paragraph, or group, longer than the
    window is cut into windows that overlap by ``overlap_tokens``.

    Args:
        pages: extracted pages (or sections of pages); chunks never cross from one to the next.
        doc_id: id stamped on every chunk.
        tokenizer: a Hugging Face *fast* tokenizer (needs ``return_offsets_mapping``).
        chunk_tokens: longest chunk, tokens.
        overlap_tokens: tokens shared by consecutive windows of one long paragraph; must be < the window.
        max_seq_length: the embedding model's input limit, tokens (sentence-transformers'
            ``max_seq_length``); chunks are capped so a chunk plus the tokenizer's special
            tokens fits it. None: no cap beyond ``chunk_tokens``.

    Returns:
        Chunks in document order, none longer than the (capped) window.

    Raises:
        ValueError: ``overlap_tokens`` not smaller than the window.
    """
    if max_seq_length is not None:
        chunk_tokens = min(chunk_tokens, max_seq_length - tokenizer.num_special_tokens_to_add())
    if overlap_tokens >= chunk_tokens:
        raise ValueError("overlap_tokens must be smaller than chunk_tokens")
    chunks: list[Chunk] = []
    for page in pages:
        if not page.text.strip():
            continue
        offsets = tokenizer(page.text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        for first, last in _groups(_paragraph_tokens(page.text, offsets), chunk_tokens):
            for start, end in _windows(first, last, chunk_tokens, overlap_tokens):
                text, n_tokens = _fit(page.text, offsets[start:end], tokenizer, chunk_tokens)
                if text:
                    chunks.append(Chunk(doc_id, len(chunks), page.number, page.section, text, n_tokens, page.ocr))
    return chunks


def _paragraph_tokens(text: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges of the paragraphs of ``text`` (tokens that start before a
    paragraph's end and after the previous one's), in order; paragraphs without tokens are skipped."""
    spans, i = [], 0
    for match in _PARAGRAPH.finditer(text):
        start = i
        while i < len(offsets) and offsets[i][0] < match.end():
            i += 1
        if i > start:
            spans.append((start, i))
    return spans


def _groups(paragraphs: list[tuple[int, int]], chunk_tokens: int) -> list[tuple[int, int]]:
    """Token ranges of chunks: each paragraph, joined to the following ones while the group is
    under a quarter of ``chunk_tokens``. A short group joins even a paragraph too long to fit (its
    first window then starts with it), so a heading never ends up a chunk of its own: a chunk that
    says only "Chapter 14" matches every question a little and answers none."""
    groups: list[tuple[int, int]] = []
    for start, end in paragraphs:
        if groups:
            first, last = groups[-1]
            if last - first < chunk_tokens // 4:
                groups[-1] = (first, end)
                continue
        groups.append((start, end))
    return groups


def _windows(first: int, last: int, chunk_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """``[start, end)`` windows over tokens ``first..last``: one when it fits, else windows of
    ``chunk_tokens`` overlapping by ``overlap_tokens``, the last one ending at ``last``."""
    if last - first <= chunk_tokens:
        return [(first, last)]
    step = chunk_tokens - overlap_tokens
    starts = range(first, max(last - overlap_tokens, first + 1), step)
    return [(s, min(s + chunk_tokens, last)) for s in starts if s < last]


def title_of(filename: str) -> str:
    """A document title from its file name: ``Super_Bowl_50.txt`` -> ``Super Bowl 50``."""
    return " ".join(PurePath(filename).stem.replace("_", " ").replace("-", " ").split())


def embedding_text(chunk: Chunk, title: str, tokenizer, max_seq_length: int) -> str:
    """The text to embed for a chunk: ``title > section``, a newline, then the chunk.

    Args:
        chunk: the chunk (its ``n_tokens`` already fits ``max_seq_length``).
        title: the document title (see ``title_of``).
        tokenizer: the embedding model's fast tokenizer.
        max_seq_length: the embedding model's input limit, tokens.

    Returns:
        The context line cut to the tokens left after the chunk and the special tokens (dropped
        when none are left), then the chunk text unchanged.
    """
    context = " > ".join(x for x in (title, chunk.section) if x)
    room = max_seq_length - tokenizer.num_special_tokens_to_add() - chunk.n_tokens
    if not context or room <= 0:
        return chunk.text
    offsets = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)["offset_mapping"]
    if len(offsets) > room:
        context = context[: offsets[room - 1][1]]
    return f"{context}\n{chunk.text}"


def _fit(text: str, window: list[tuple[int, int]], tokenizer, limit: int) -> tuple[str, int]:
    """The window's text and its token count, trimmed from the end until it re-tokenizes to
    at most ``limit`` tokens (a window that starts inside a word, e.g. at ``##ing``, can grow
    by a token or two when its text is tokenized on its own)."""
    end = len(window)
    while end > 0:
        piece = text[window[0][0]:window[end - 1][1]].strip()
        n = len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"])
        if n <= limit:
            return piece, n
        end -= n - limit
    return "", 0
