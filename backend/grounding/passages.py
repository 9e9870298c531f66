"""A document's text as passages a citation can point to: sentences, each with its place.

Sentences come from ``sentencex`` (Wikimedia's rule-based segmenter, which returns character offsets);
each one keeps the page and section it sits in and its ``start``/``end`` character offsets into that
page's text (``Page.text`` as stored at ingestion), so a viewer can open the page and mark the span.

``sentencex`` joins lines that end without punctuation, which is right for prose wrapped at a margin and
wrong for a heading, a table row or a form's fields ("Order number: KX-48213" then "Shipping to: 22 Larch
Street"). A line break inside one of its sentences ends a passage when it is a *hard* break:

* the next line's first word would have fitted on the line before within the text's margin (prose
  wrapped at a margin breaks only where the next word did not fit: the test text reflow uses to tell a
  wrapped line from a broken one, e.g. ``par`` and format=flowed readers);
* the line before does not end the way a sentence goes on (a lower-case word, a comma, a hyphen, a colon:
  "... into camp that" / "Johnston is coming", around a figure in a narrow column, stays one sentence);
* and the next line does not open in lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sentencex

from backend.documents import Page

_GOES_ON = set(",;:-–—(/&")  # a line ending in one of these goes on in the next
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
    width = _margin(text)
    for b in sentencex.get_sentence_boundaries(language, text):
        for start, end in _lines_of(text, *_trimmed(text, b["start_index"], b["end_index"]), width):
            spans.extend(_cut(text, start, end))
    return spans


def _margin(text: str) -> int:
    """Where ``text``'s lines wrap, in characters: the 90th percentile of the lengths of its lines that hold
    text (its longest line would let a stray wide line, a URL or a figure's garbled labels, widen a column of
    prose; blank lines between paragraphs are no lines of the column, and counted they narrowed the margin of
    an OCR'd form below its own field lines)."""
    lengths = sorted(n for n in (len(line.rstrip()) for line in text.splitlines()) if n)
    return lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))] if lengths else 0


def _cut(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``(start, end)`` as spans of at most ``MAX_PASSAGE_CHARS``, cut at the last space before the limit."""
    spans = []
    while end - start > MAX_PASSAGE_CHARS:
        cut = max(text.rfind(c, start + 1, start + MAX_PASSAGE_CHARS) for c in " \n\t")
        cut = cut if cut > start else start + MAX_PASSAGE_CHARS
        spans.append(_trimmed(text, start, cut))
        start = _trimmed(text, cut, end)[0]
    if end > start:
        spans.append((start, end))
    return spans


def _lines_of(text: str, start: int, end: int, width: int) -> list[tuple[int, int]]:
    """One sentence span cut at its hard line breaks (see the module docstring).

    Args:
        text: the page text.
        start / end: the sentence's trimmed offsets.
        width: the text's margin in characters (``_margin``: where wrapped prose breaks).
    """
    out, line_start = [], start
    brk = text.find("\n", start, end)
    while brk != -1:
        after = _trimmed(text, brk, end)[0]
        word = re.match(r"\S*", text[after:end]).group()
        line = text[line_start:brk].rstrip()
        last = line.rsplit(None, 1)[-1] if line.strip() else ""
        if (word and not word[0].islower() and last and last[-1] not in _GOES_ON and not last[0].islower()
                and len(line) + 1 + len(word) <= width):
            out.append(_trimmed(text, start, brk))
            start = after
        line_start = after
        brk = text.find("\n", after, end)
    out.append((start, end))
    return [s for s in out if s[1] > s[0]]


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
