"""DOCX text in reading order, from python-docx's document model and its underlying XML.

python-docx gives the body's paragraphs and tables in order, headers and footers, and styles,
but its ``Paragraph.text`` drops tracked insertions and it has no API for list numbers,
footnotes or endnotes. This module fills those gaps by reading the WordprocessingML that
python-docx already parsed (ECMA-376 Part 1, 17.9 numbering, 17.11 notes, 17.13 revisions):

- runs inside ``w:ins`` are kept; ``w:del`` / ``w:moveFrom`` runs are dropped;
- list paragraphs get their rendered label (``1.``, ``a)``, ``iv.``, ``•``) from the numbering
  definitions, counted per list the way Word counts them;
- footnotes and endnotes follow the body as ``[^N] text`` lines, referenced in the text as ``[^N]``;
- headings (``Title`` / ``Heading N`` styles) start sections whose titles travel with the chunks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import docx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml import parse_xml
from docx.oxml.ns import qn

_T, _TAB, _BR, _CR = qn("w:t"), qn("w:tab"), qn("w:br"), qn("w:cr")
_HYPHEN = qn("w:noBreakHyphen")
_SKIP = {qn("w:del"), qn("w:moveFrom"), qn("w:rPr"), qn("w:pPr"), qn("w:instrText"), qn("w:delText")}
_NOTE_REFS = {qn("w:footnoteReference"): "", qn("w:endnoteReference"): "e"}
_BULLET = "•"


def run_text(element) -> str:
    """The visible text under a WordprocessingML element, with tracked changes accepted.

    Args:
        element: an lxml element (``w:p``, ``w:r``, ``w:ins``, ``w:hyperlink``, ``w:sdt``...).

    Returns:
        Text of ``w:t`` runs, tabs as ``\\t``, breaks as ``\\n``, note references as ``[^N]``
        (``[^eN]`` for endnotes); deleted and moved-away runs are left out.
    """
    out: list[str] = []
    for child in element:
        tag = child.tag
        if tag in _SKIP:
            continue
        if tag == _T:
            out.append(child.text or "")
        elif tag == _TAB:
            out.append("\t")
        elif tag in (_BR, _CR):
            out.append("\n")
        elif tag == _HYPHEN:
            out.append("-")
        elif tag in _NOTE_REFS:
            out.append(f"[^{_NOTE_REFS[tag]}{child.get(qn('w:id'))}]")
        else:
            out.append(run_text(child))
    return "".join(out)


def _roman(n: int) -> str:
    """``4`` -> ``iv`` (lower case)."""
    out = ""
    for value, digits in ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
                          (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i")):
        count, n = divmod(n, value)
        out += digits * count
    return out


def _letters(n: int) -> str:
    """``1`` -> ``a``, ``27`` -> ``aa`` (Word repeats the letter: ST_NumberFormat lowerLetter)."""
    return chr(ord("a") + (n - 1) % 26) * ((n - 1) // 26 + 1)


def format_number(n: int, num_fmt: str) -> str:
    """Render a list counter in a ``w:numFmt`` format (ECMA-376 Part 1, 17.18.59).

    Args:
        n: the counter value, >= 0.
        num_fmt: ``decimal``, ``lowerLetter``, ``upperLetter``, ``lowerRoman``, ``upperRoman``,
            ``decimalZero``, ``bullet`` or ``none``; other formats fall back to decimal.

    Returns:
        The rendered number ("" for ``none``, a bullet for ``bullet``).
    """
    if num_fmt == "none":
        return ""
    if num_fmt == "bullet":
        return _BULLET
    if num_fmt in ("lowerLetter", "upperLetter"):
        s = _letters(max(n, 1))
        return s.upper() if num_fmt == "upperLetter" else s
    if num_fmt in ("lowerRoman", "upperRoman"):
        s = _roman(max(n, 1))
        return s.upper() if num_fmt == "upperRoman" else s
    if num_fmt == "decimalZero":
        return f"{n:02d}"
    return str(n)


@dataclass(frozen=True)
class _Level:
    start: int
    num_fmt: str
    lvl_text: str


class Numbering:
    """List labels for numbered and bulleted paragraphs, counted in document order.

    Args:
        document: a python-docx ``Document``.
    """

    def __init__(self, document):
        self._levels: dict[str, dict[int, _Level]] = {}
        self._counters: dict[str, dict[int, int]] = {}
        self._styles = document.styles.element
        part = _related_part(document.part, RT.NUMBERING)
        if part is None:
            return
        root = parse_xml(part.blob)
        abstract = {a.get(qn("w:abstractNumId")): a for a in root.findall(qn("w:abstractNum"))}
        for num in root.findall(qn("w:num")):
            ref = num.find(qn("w:abstractNumId"))
            if ref is None or ref.get(qn("w:val")) not in abstract:
                continue
            levels = {int(lvl.get(qn("w:ilvl"), "0")): _level(lvl)
                      for lvl in abstract[ref.get(qn("w:val"))].findall(qn("w:lvl"))}
            for override in num.findall(qn("w:lvlOverride")):  # per-list restarts
                ilvl = int(override.get(qn("w:ilvl"), "0"))
                start = override.find(qn("w:startOverride"))
                if start is not None and ilvl in levels:
                    lv = levels[ilvl]
                    levels[ilvl] = _Level(int(start.get(qn("w:val"))), lv.num_fmt, lv.lvl_text)
            self._levels[num.get(qn("w:numId"))] = levels

    def label(self, p_element) -> str:
        """The list label of a paragraph, advancing its list's counter.

        Args:
            p_element: a ``w:p`` element.

        Returns:
            e.g. ``"2."``, ``"1.3"``, ``"•"``; ``""`` when the paragraph is not in a list.
        """
        num_id, ilvl = self._num_pr(p_element)
        levels = self._levels.get(num_id or "")
        if not levels or ilvl not in levels:
            return ""
        counters = self._counters.setdefault(num_id, {})
        counters[ilvl] = counters.get(ilvl, levels[ilvl].start - 1) + 1
        for deeper in [k for k in counters if k > ilvl]:  # a parent item restarts its sub-lists
            del counters[deeper]
        text = levels[ilvl].lvl_text
        if levels[ilvl].num_fmt == "bullet":
            return _BULLET
        for lvl, level in levels.items():
            if f"%{lvl + 1}" in text:
                value = counters.get(lvl, level.start)
                text = text.replace(f"%{lvl + 1}", format_number(value, level.num_fmt))
        return text

    def _num_pr(self, p_element) -> tuple[str | None, int]:
        """``(numId, ilvl)`` from the paragraph's own properties or its style chain."""
        num_pr = p_element.find(f"{qn('w:pPr')}/{qn('w:numPr')}")
        style_id = p_element.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
        style_id = style_id.get(qn("w:val")) if style_id is not None else None
        seen: set[str] = set()
        while num_pr is None and style_id and style_id not in seen:
            seen.add(style_id)
            style = self._styles.find(f"{qn('w:style')}[@{qn('w:styleId')}='{style_id}']")
            if style is None:
                break
            num_pr = style.find(f"{qn('w:pPr')}/{qn('w:numPr')}")
            based = style.find(qn("w:basedOn"))
            style_id = based.get(qn("w:val")) if based is not None else None
        if num_pr is None:
            return None, 0
        num_id, ilvl = num_pr.find(qn("w:numId")), num_pr.find(qn("w:ilvl"))
        return (num_id.get(qn("w:val")) if num_id is not None else None,
                int(ilvl.get(qn("w:val"))) if ilvl is not None else 0)


def _level(lvl) -> _Level:
    """Parse one ``w:lvl``."""
    def val(tag: str, default: str) -> str:
        el = lvl.find(qn(tag))
        return el.get(qn("w:val"), default) if el is not None else default

    return _Level(int(val("w:start", "1")), val("w:numFmt", "decimal"), val("w:lvlText", ""))


def _related_part(part, reltype: str):
    """The part related to ``part`` by ``reltype``, or None."""
    for rel in part.rels.values():
        if rel.reltype == reltype and not rel.is_external:
            return rel.target_part
    return None


def notes(document) -> list[str]:
    """Footnotes then endnotes as ``[^N] text`` / ``[^eN] text`` lines (separators skipped).

    Args:
        document: a python-docx ``Document``.
    """
    lines = []
    for reltype, tag, prefix in ((RT.FOOTNOTES, "w:footnote", ""), (RT.ENDNOTES, "w:endnote", "e")):
        part = _related_part(document.part, reltype)
        if part is None:
            continue
        for note in parse_xml(part.blob).findall(qn(tag)):
            if note.get(qn("w:type")) in ("separator", "continuationSeparator", "continuationNotice"):
                continue
            text = " ".join(t for t in (run_text(p).strip() for p in note.iter(qn("w:p"))) if t)
            if text:
                lines.append(f"[^{prefix}{note.get(qn('w:id'))}] {text}")
    return lines


@dataclass(frozen=True)
class Block:
    """One line of a DOCX in reading order.

    Attributes:
        text: the line (a paragraph with its list label, or a table row as ``a | b | c``).
        heading: the heading level (0 = ``Title``, 1-9 = ``Heading N``) or None.
    """

    text: str
    heading: int | None = None


def _heading_level(paragraph) -> int | None:
    """0 for ``Title``, N for ``Heading N``, else None (by style name, as Word's built-ins)."""
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name == "Title":
        return 0
    if name.startswith("Heading ") and name[8:].isdigit():
        return int(name[8:])
    return None


def _container_blocks(container, numbering: Numbering) -> Iterator[Block]:
    """Paragraphs and table rows of a body, header, footer or cell, in order."""
    for item in container.iter_inner_content():
        if isinstance(item, docx.table.Table):
            for row in item.rows:
                cells = []
                for cell in row.cells:
                    text = "\n".join(b.text for b in _container_blocks(cell, numbering)).strip()
                    cells.append(" ".join(text.split("\n")))
                if any(cells):
                    yield Block(" | ".join(cells))
        else:
            text = run_text(item._p).strip()
            label = numbering.label(item._p)
            if text:
                yield Block(f"{label} {text}" if label else text, _heading_level(item))


def docx_blocks(data: bytes) -> list[Block]:
    """Read a DOCX: headers and footers once each, the body in order, then notes.

    Args:
        data: the file's bytes.

    Returns:
        Non-empty blocks.

    Raises:
        Whatever python-docx raises for a broken package (the caller maps it to a user error).
    """
    document = docx.Document(io.BytesIO(data))
    numbering = Numbering(document)
    blocks: list[Block] = []
    seen: set[str] = set()
    for section in document.sections:
        for part in (section.first_page_header, section.header, section.even_page_header,
                     section.first_page_footer, section.footer, section.even_page_footer):
            if part.is_linked_to_previous:  # no definition of its own
                continue
            text = "\n".join(b.text for b in _container_blocks(part, numbering))
            if text and text not in seen:
                seen.add(text)
                blocks.append(Block(text))
    blocks.extend(_container_blocks(document, numbering))
    blocks.extend(Block(line) for line in notes(document))
    return blocks
