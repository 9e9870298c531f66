"""Token-aware chunking: fixed windows of embedding-model tokens with overlap.

Windows are cut on the embedding tokenizer's own token offsets, so no chunk exceeds the
model's ``max_seq_length`` (text past it would be silently truncated by the encoder and
never be searchable), and every chunk is an exact slice of its page's text.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.extract import Page


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
    """

    doc_id: str
    index: int
    page: int
    section: str
    text: str
    n_tokens: int


def chunk_pages(pages: list[Page], doc_id: str, tokenizer, chunk_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Split pages into overlapping token windows.

    Args:
        pages: extracted pages (or sections of pages); windows never cross from one to the next.
        doc_id: id stamped on every chunk.
        tokenizer: a Hugging Face *fast* tokenizer (needs ``return_offsets_mapping``).
        chunk_tokens: window length, tokens.
        overlap_tokens: tokens shared by consecutive windows of a page; must be < chunk_tokens.

    Returns:
        Chunks in document order, none longer than ``chunk_tokens`` tokens.

    Raises:
        ValueError: ``overlap_tokens >= chunk_tokens``.
    """
    if overlap_tokens >= chunk_tokens:
        raise ValueError("overlap_tokens must be smaller than chunk_tokens")
    step = chunk_tokens - overlap_tokens
    chunks: list[Chunk] = []
    for page in pages:
        if not page.text.strip():
            continue
        offsets = tokenizer(page.text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        for start in range(0, max(len(offsets) - overlap_tokens, 1), step):
            window = offsets[start:start + chunk_tokens]
            if not window:
                break
            text = page.text[window[0][0]:window[-1][1]].strip()
            if text:
                chunks.append(Chunk(doc_id, len(chunks), page.number, page.section, text, len(window)))
    return chunks
