"""The words of questions, answers and passages as attribution compares them: content words (function words
dropped, Snowball English stems, hyphenation across line breaks joined, NFKC-folded), the statements an answer
makes, the names a question uses that the documents never do, and the first sentence that abstains ("The text does
not mention ..."). ``attribution`` finds and scores passages with them.
"""

from __future__ import annotations

import difflib
import functools
import re
import threading
import unicodedata

import snowballstemmer

from backend.grounding.passages import sentence_spans

MAX_CLAIMS = 4  # answer sentences matched to passages (a rambling answer's tail adds nothing to check)

# Function words: articles, pronouns, auxiliaries, prepositions, conjunctions (short English list).
STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at",
    "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did",
    "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have",
    "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into",
    "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "of", "off",
    "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she",
    "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then",
    "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
    "you", "your", "yours", "yourself", "yourselves", "s", "t", "don", "doesn", "didn", "isn", "aren", "wasn",
    "weren", "also", "whose",
])
_WORD = re.compile(r"\w+")
_STEMMERS = threading.local()  # a Snowball stemmer keeps its word in its own state: one per thread (two answers
# attributed at once in one shared stemmer raised IndexError inside it)
_BROKEN = re.compile(r"(\w)-[ \t]*\r?\n[ \t]*(\w)")  # a word hyphenated across a line break ("wav-\ning")
_NAME = re.compile(r"(?<=[\s\"“(])([A-Z][^\W_]*)")  # a capitalised word that does not open the question
NAME_MATCH = 0.8  # difflib ratio at which a document word counts as the question's name, misspelt

_DOCS = r"(?:documents?|text|context|passages?|article|excerpts?|sources?|information|data)"
_ABSTAIN = re.compile(
    r"\b(?:"
    rf"(?:the |these |this |provided |given |your )*{_DOCS}(?: provided| given)? (?:do|does|did)(?:n't| not) "
    r"(?:mention|say|state|specify|provide|contain|include|give|tell|discuss|describe|answer|cover)"
    r"|(?:is|are|was|were)(?:n't| not) (?:mentioned|specified|stated|provided|given|included|discussed|described|"
    r"available|listed|found|addressed|covered)"
    rf"|not (?:mentioned|specified|stated|provided|found|addressed|covered|discussed) in (?:the |these |your )*{_DOCS}"
    rf"|no (?:information|mention|details?|data|indication|reference)(?: is| was)? (?:about|on|of|regarding|in|given|provided|available)"
    r"|(?:cannot|can't|can not|unable to|could not|couldn't) (?:find|determine|answer|tell|say|be determined|locate)"
    r"|i (?:do not|don't) know|does not say|do not say"
    r")", re.IGNORECASE)


def spelled(text: str) -> list[str]:
    """The lower-case words of ``text`` as written (no stemming, no stop words dropped), NFKC-folded and
    with words hyphenated across a line break joined."""
    return _WORD.findall(_BROKEN.sub(r"\1\2", unicodedata.normalize("NFKC", text)).lower())


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """The Snowball (Porter 2) English stem of a lower-case word: ``centuries`` and ``century`` -> ``centuri``.
    Thread-safe: each thread stems with its own stemmer (``lru_cache`` itself is thread-safe)."""
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def words(text: str) -> list[str]:
    """Content words of ``text``: lower-cased ``\\w+`` runs without function words, stemmed (Snowball
    English, so ``used``/``use`` and ``centuries``/``century`` match), words hyphenated across a line break
    joined, NFKC compatibility forms folded (the ligature in ``diﬀerent`` is ``ff``)."""
    return [_stem(w) for w in spelled(text) if w not in STOPWORDS]


# Words answers use to talk about the documents rather than about their subject.
ANSWER_FILLER = frozenset(words("""
answer answers question questions document documents text context passage article excerpt excerpts according
based mentioned mentions mention says said states stated yes provided information given source sources user
"""))


def unnamed(question: str, vocabulary: set[str] | frozenset[str]) -> list[str]:
    """The names in a question that the documents never use: capitalised words after its first
    (``Normandy``, ``NFC``), none of whose spellings occurs in ``vocabulary`` even misspelt
    (``difflib`` ratio >= ``NAME_MATCH``). A question about something the documents never name cannot
    be answered from them.

    Args:
        question: the question as typed.
        vocabulary: the documents' words as written (``spelled``), lower case.
    """
    missing = []
    for name in _NAME.findall(question):
        parts = [w for w in spelled(name) if w not in STOPWORDS]
        if parts and not all(p in vocabulary or difflib.get_close_matches(p, vocabulary, 1, NAME_MATCH)
                             for p in parts):
            missing.append(name)
    return missing


def is_abstention(answer: str) -> bool:
    """True when the answer's first sentence says the documents do not hold the answer ("The text does
    not mention ...", "... is not specified", "I don't know"). A hedge after an answer ("... in 1888.
    However, the document does not give the day") does not count: the answer was given."""
    spans = sentence_spans(answer)
    first = answer[spans[0][0]:spans[0][1]] if spans else answer
    return bool(_ABSTAIN.search(first))


def without_headings(answer: str, names: set[str]) -> str:
    """``answer`` without the document headings a small model echoes from its prompt (``# notes.pdf (page 2,
    Intro)``, ``notes.pdf (page 2)``): the prompt's own labels, not a statement about the document.

    Args:
        answer: the answer.
        names: the selected documents' file names.
    """
    for name in names:
        answer = re.sub(rf"#*\s*{re.escape(name)}(?:\s*\(page \d+[^)\n]*\))?", " ", answer)
    return answer


def claims(question: str, answer: str) -> list[set[str]]:
    """What each sentence of the answer adds: its content words less the question's (all of them when
    it only restates the question) and less words about the documents (``ANSWER_FILLER``); sentences
    that add nothing are left out. At most ``MAX_CLAIMS`` sentences, in answer order."""
    q_words = set(words(question))
    out = []
    for start, end in sentence_spans(answer)[:MAX_CLAIMS]:
        said = set(words(answer[start:end])) - ANSWER_FILLER
        added = (said - q_words) or said
        if added:
            out.append(added)
    return out
