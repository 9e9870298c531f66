"""Documents named by name: the library's own links, used to re-rank a hybrid search's candidates.

A question about a library often needs two documents, the second reached through the first (HotpotQA's
"bridge" questions: *the director of the film that ...*), or names the documents it compares. Neither
search method sees that: the second document shares few words with the question. But the library knows its
documents' names, and text that names a document is a link to it, as a hyperlink is in the link-following
multi-hop retrievers (e.g. Asai et al., 2020, "Learning to Retrieve Reasoning Paths over Wikipedia Graphs").
So, over the fused candidates only (a document must already be among what the question retrieves):

1. a chunk whose document, or whose section, the question names gains ``TITLE_WEIGHT``;
2. the ``LEAD`` best chunks keep their places, and the best candidate chunk of each other document that a
   lead chunk's text names gains ``LINK_WEIGHT``; so does the best chunk of each other section *of the lead
   chunk's own document* that its text names.

A section heading is a document's own link target, as a file name is the library's: with all of a question's
paragraphs in one document, as its sections, the second one is reached through the first in the same way.
A document's name for this is its file name without the extension, underscores read as spaces and a
trailing parenthesis dropped ("Ed Wood (film).txt" -> "ed wood"); a section's is the last heading of its path
("History > Early years" -> "early years"), its trailing parenthesis dropped too. Names under
``MIN_NAME_CHARS`` characters, and generic ones a question uses about any document ("document.pdf",
``GENERIC_NAMES``), are never matched.
The weights are on the fused score's scale (0-1) and were chosen on the HotpotQA tuning questions
(``benchmarks/multihop.py --set tuning --grid``; docs/benchmarks.md).
"""

from __future__ import annotations

import re
from functools import lru_cache

TITLE_WEIGHT = 0.5  # the question names the chunk's document
LINK_WEIGHT = 0.6  # a lead chunk names the chunk's document
LEAD = 2  # best chunks whose text is followed; they keep their places
MIN_NAME_CHARS = 4
# File names that are words questions use about any document ("what does the document say"): never links.
GENERIC_NAMES = frozenset({"document", "documents", "file", "files", "text", "untitled", "image", "scan", "page",
                           "download", "attachment", "new document"})


@lru_cache(maxsize=65_536)
def title_of(name: str) -> str:
    """The words a text would use for a document called ``name``: the file name's stem, lower case, ``_`` as
    spaces, a trailing ``(...)`` dropped, spaces collapsed; ``""`` when that is under ``MIN_NAME_CHARS`` or in
    ``GENERIC_NAMES``."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", name)
    title = re.sub(r"\s*\([^()]*\)\s*$", "", stem.replace("_", " "))
    title = " ".join(title.lower().split())
    return title if len(title) >= MIN_NAME_CHARS and title not in GENERIC_NAMES else ""


@lru_cache(maxsize=65_536)
def heading_of(section: str) -> str:
    """The words a text would use for a section whose heading path is ``section``: its last heading, lower
    case, a trailing ``(...)`` dropped, spaces collapsed; ``""`` when that is under ``MIN_NAME_CHARS`` or in
    ``GENERIC_NAMES``."""
    last = section.rsplit(" > ", 1)[-1]
    title = " ".join(re.sub(r"\s*\([^()]*\)\s*$", "", last).lower().split())
    return title if len(title) >= MIN_NAME_CHARS and title not in GENERIC_NAMES else ""


@lru_cache(maxsize=65_536)
def _pattern(title: str) -> re.Pattern:
    """``title`` as a whole-word, any-spacing pattern."""
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, title.split())) + r"(?!\w)")


def names(text: str, name: str) -> bool:
    """Whether ``text`` names the document called ``name`` (see ``title_of``); case-insensitive."""
    return _named(text.lower(), name)


def linked(rows: list[dict], doc_names: dict[str, str], query: str, k: int, *, title_weight: float = TITLE_WEIGHT,
           link_weight: float = LINK_WEIGHT, lead: int = LEAD) -> list[dict]:
    """Re-rank fused candidates by the documents and sections the question and the best chunks name.

    Args:
        rows: fused candidates, best first, each with ``doc_id``, ``text``, ``_relevance`` (the fused score, 0-1
            per method's share) and, optionally, ``section`` (its heading path).
        doc_names: ``{doc_id: file name}`` for the rows' documents.
        query: the question.
        k: rows wanted.
        title_weight, link_weight, lead: the module's constants (``benchmarks/multihop.py --grid`` varies them).

    Returns:
        The top ``k`` rows, re-ranked, each ``_relevance`` the score it was ranked by, capped at the last lead's
        (so scores never rise down the list).
    """
    lowered = query.lower()
    scored = [{**r, "_relevance": r["_relevance"] + (title_weight if _named(lowered, doc_names.get(r["doc_id"]))
                                                      or _headed(lowered, r.get("section")) else 0.0)} for r in rows]
    scored.sort(key=lambda r: r["_relevance"], reverse=True)
    leads, rest = scored[:lead], scored[lead:]
    lead_text = "\n".join(r["text"] for r in leads).lower()
    lead_docs = {r["doc_id"] for r in leads}
    lead_sections = {(r["doc_id"], r.get("section") or "") for r in leads}
    text_in = {d: "\n".join(r["text"] for r in leads if r["doc_id"] == d).lower() for d in lead_docs}
    followed: set = set()
    for r in rest:  # best first, so each linked document's (or section's) best chunk is the one raised
        doc, section = r["doc_id"], r.get("section") or ""
        if doc not in lead_docs:
            target, linked_to = doc, _named(lead_text, doc_names.get(doc))
        else:  # another section of a lead chunk's document, named by that document's lead text
            target = (doc, section)
            linked_to = target not in lead_sections and _headed(text_in[doc], section)
        if not linked_to or target in followed:
            continue
        followed.add(target)
        r["_relevance"] += link_weight
    rest.sort(key=lambda r: r["_relevance"], reverse=True)
    if leads:  # a raised chunk ranks below the leads, and its score says so (scores never rise down the list)
        for r in rest:
            r["_relevance"] = min(r["_relevance"], leads[-1]["_relevance"])
    return (leads + rest)[:k]


def _headed(lowered_text: str, section: str | None) -> bool:
    """Whether lower-case ``lowered_text`` names the section with heading path ``section`` (``heading_of``)."""
    title = heading_of(section) if section else ""
    return bool(title) and _pattern(title).search(lowered_text) is not None


def _named(lowered_text: str, name: str | None) -> bool:
    """``names`` on text already in lower case; False for an unknown document."""
    title = title_of(name) if name else ""
    return bool(title) and _pattern(title).search(lowered_text) is not None
