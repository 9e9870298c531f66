"""A document's text as passages a citation can point to: sentences, each with its place.

Sentences come from ``sentencex`` (Wikimedia's rule-based segmenter, which returns character offsets);
each one keeps the page and section it sits in and its ``start``/``end`` character offsets into that
page's text (``Page.text`` as stored at ingestion), so a viewer can open the page and mark the span.
A line that ends without punctuation (a heading, a list item, a table row) is a passage of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import sentencex

from backend.documents import Page

MAX_PASSAGE_CHARS = 600  # a "sentence" longer than this (a run-on table or a page without punctuation) is cut


@dataclass(frozen=True)
class Passage:
    """One sentence of a document and where it is.

    Attributes:
        doc_id / name: the document.
        part: index of the page run (``Page``) in the document's stored pages; a DOCX or Markdown file
            has one run per section, all on page 1.
        page: 1-based page number.
        section: the heading path it sits under ("" when none).
        start / end: character offsets of the sentence in that run's text (``text == page.text[start:end]``).
        text: the sentence.
        ocr: its page was read by OCR.
    """

    doc_id: str
    name: str
    part: int
    page: int
    section: str
    start: int
    end: int
    text: str
    ocr: bool = False


def sentence_spans(text: str, language: str = "en") -> list[tuple[int, int]]:
    """Sentence boundaries in ``text`` as ``(start, end)`` character offsets, whitespace trimmed, blank
    runs left out, and sentences over ``MAX_PASSAGE_CHARS`` cut at the last space before the limit.

    Args:
        text: any text.
        language: ISO 639 code for ``sentencex``'s abbreviation rules.
    """
    spans = []
    for b in sentencex.get_sentence_boundaries(language, text):
        start, end = _trimmed(text, b["start_index"], b["end_index"])
        while end - start > MAX_PASSAGE_CHARS:
            cut = max(text.rfind(c, start + 1, start + MAX_PASSAGE_CHARS) for c in " \n\t")
            cut = cut if cut > start else start + MAX_PASSAGE_CHARS
            spans.append(_trimmed(text, start, cut))
            start = _trimmed(text, cut, end)[0]
        if end > start:
            spans.append((start, end))
    return spans


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` moved inwards past whitespace."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def passages_of(doc_id: str, name: str, pages: list[Page]) -> list[Passage]:
    """Every sentence of a document, in reading order.

    Args:
        doc_id / name: the document.
        pages: its stored pages (``DocumentService.pages``).

    Returns:
        Passages with offsets into each page run's text.
    """
    out = []
    for part, page in enumerate(pages):
        for start, end in sentence_spans(page.text):
            out.append(Passage(doc_id, name, part, page.number, page.section, start, end, page.text[start:end],
                               page.ocr))
    return out
