"""Where an answer comes from: the sentences of the selected documents that support it, and a verdict.

Run after the answer is complete (it never delays the first token). Lexical, IDF-weighted overlap at
sentence level, computed in Python over the documents' passages (``passages.py``):

* the answer's *content words* that the question does not already contain are what the answer adds;
  a passage supports the answer as far as it holds them (IDF-weighted share, ``support``);
* the question's content words in the passage and its neighbours (``relevance``) tell a passage about
  the question from one that only shares the answer's words, and break ties;
* each sentence of the answer is matched to the passage that scores best on
  ``support + RELEVANCE_WEIGHT * relevance``, and, when that passage leaves much of the sentence
  uncovered, to the best passages for the rest. Those passages are the sources, best first: ranked by the
  question's words in and around each (0..2) plus its share of everything the answer says, so the first
  source is the one about the question that holds the answer (answer order put it first for 0.860 of the
  right answers on the tuning set, this ranking for 0.907). They are looked for in the whole selected
  documents in every mode (a bonus for the chunk a RAG answer read changed no citation on the tuning
  set, so there is none). Document headings the model echoes from its prompt are left out first.

The verdict (``grounding``), judged on the answer's first statement (a small model's answer comes
first):

* ``not_found`` when the model's first sentence says the documents do not say (``is_abstention``), or when
  the question names something the documents never name (``unnamed``: a question about an entity the
  documents do not mention cannot be answered from them; on the constructed tuning set this caught 80 of 100
  unanswerable questions and none of 80 answerable ones, on SQuAD 2.0's human-written ones 50 of 1,553 and 15
  of 1,512 answerable ones: ``calibration``). These two hold for every model;
* otherwise ``verdict.judge`` over the answer's signals (``verdict.measure``: what the answer claims, whether
  one passage holds the claim among the question's words, specifics found only away from them, MiniLM
  similarity, the answering model's own yes or no on the top source) with the answering model's calibration:
  ``not_found``, ``partial`` or ``supported`` (see ``verdict``), each mark only where the calibration's held-out
  figures allow it (``calibration``); a model without one gets ◐ and the sources.

A ``not_found`` answer cites nothing, says why (``note``) and offers the passage closest to the question
(``closest``).

IDF is ``log(1 + N / (df + 0.5))`` over the selected documents' N passages (the BM25 family's IDF,
Robertson & Zaragoza 2009, without its negative branch), so a word the documents never use weighs most.
The rule's thresholds (``verdict.PARTIAL``, ``verdict.MIN_RELEVANCE``) were chosen on the tuning SQuAD articles
(``benchmarks/citations.py --tuning``, then ``--rescore`` of its dump for each setting): 0.4 and 0.3 marked 31 % of
the answerable questions not found, 0.15 and 0.05 mark 12.5 % while still 92 % of the constructed unanswerable ones;
docs/benchmarks.md reports them on held-out articles.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

from backend.grounding import verdict
from backend.grounding.calibration import Calibration
from backend.grounding.passages import Passage, sentence_spans
from backend.grounding.words import claims, is_abstention, spelled, unnamed, without_headings, words

RELEVANCE_WEIGHT = 0.5  # weight of the question's words (around a passage) against the answer's
MAX_SOURCES = 3
PASSAGES_PER_CLAIM = 3  # a statement that joins several sentences ("the misfits, the rebels ...") is covered by up to 3
MIN_GAIN = 0.2  # a further passage for a statement must hold this much of it (IDF-weighted share)
VERDICTS = ("supported", "partial", "not_found")
UNCALIBRATED = ("The answering model has no verdict calibration, so the app does not judge its answers: check the "
                "quotes (the Model panel says how to calibrate it).")

@dataclass
class PassageIndex:
    """The passages of one document with their content words, built once per document text.

    Attributes:
        passages: the document's sentences in reading order.
        terms: each passage's content words.
        windows: each passage's content words with its neighbours' in the same page run (one either side).
        df: in how many passages each word occurs.
        spellings: every lower-case word of the document as written, unstemmed (``unnamed`` looks names up
            here: stems would let ``Normandy`` pass for ``Normans``).
    """

    passages: list[Passage]
    terms: list[frozenset[str]] = field(default_factory=list)
    windows: list[frozenset[str]] = field(default_factory=list)
    df: Counter = field(default_factory=Counter)
    spellings: frozenset[str] = frozenset()

    @classmethod
    def build(cls, passages: list[Passage]) -> PassageIndex:
        """Index ``passages`` (one document's, in order)."""
        terms = [frozenset(words(p.text)) for p in passages]
        windows = []
        for i, p in enumerate(passages):
            near = [terms[j] for j in (i - 1, i + 1) if 0 <= j < len(passages) and passages[j].part == p.part]
            windows.append(terms[i].union(*near))
        spellings = frozenset(w for p in passages for w in spelled(p.text))
        return cls(passages, terms, windows, Counter(w for t in terms for w in t), spellings)


@dataclass(frozen=True)
class Source:
    """A passage cited for an answer.

    Attributes:
        doc_id / name / page / section: where it is.
        part: index of its page run in the document's stored pages (the viewer opens it).
        start / end: character offsets of ``quote`` in that run's text.
        quote: the supporting sentence itself.
        score: its rank among the sources: the question's words in and around it (0..2) plus its share of
            what the answer says (0..1).
        ocr: its page was read by OCR.
    """

    doc_id: str
    name: str
    page: int
    section: str
    part: int
    start: int
    end: int
    quote: str
    score: float
    ocr: bool = False

    @classmethod
    def of(cls, p: Passage, score: float) -> Source:
        return cls(p.doc_id, p.name, p.page, p.section, p.part, p.start, p.end, p.text, round(score, 4), p.ocr)


@dataclass(frozen=True)
class Attribution:
    """An answer's sources and grounding verdict.

    Attributes:
        grounding: ``supported``, ``partial`` or ``not_found``.
        sources: the supporting passages, best first (none when ``not_found``).
        closest: for ``not_found`` (and ◐ without sources), the passage closest to the question (None when the
            documents share none of its words, or the answer has sources).
        support: IDF-weighted share of what the answer's first statement adds that its sources hold, 0..1.
        relevance: IDF-weighted share of the question's words around the first (or closest) source, 0..1.
        abstained: the model itself said the documents do not hold the answer.
        seconds: wall time of the attribution.
        note: for ``not_found``, why, one sentence; for ◐ of a model without a calibration, that it is unjudged
            ("" otherwise).
        confidence: the verdict model's probability that the answer is right (``verdict.probability``; 0 when a
            rule decided: the model said so itself, the question names what the documents never do).
        signals: the verdict model's inputs (``verdict.Signals``), {} when a rule decided.
    """

    grounding: str
    sources: list[Source]
    closest: Source | None
    support: float
    relevance: float
    abstained: bool
    seconds: float
    note: str = ""
    confidence: float = 0.0
    signals: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able form (sources and closest as dicts)."""
        return asdict(self)


class _Weights:
    """IDF weights over a set of passage indexes."""

    def __init__(self, indexes: list[PassageIndex]):
        self.n = sum(len(ix.passages) for ix in indexes)
        self.df = Counter()
        for ix in indexes:
            self.df.update(ix.df)
        self.cache: dict[str, float] = {}

    def idf(self, word: str) -> float:
        w = self.cache.get(word)
        if w is None:
            w = self.cache[word] = math.log(1 + self.n / (self.df.get(word, 0) + 0.5))
        return w

    def share(self, wanted: Iterable[str], have: frozenset[str] | set[str]) -> float:
        """IDF-weighted share of ``wanted`` found in ``have`` (1.0 when ``wanted`` is empty)."""
        total = found = 0.0
        for word in wanted:
            w = self.idf(word)
            total += w
            if word in have:
                found += w
        return found / total if total else 1.0


def attribute(question: str, answer: str, indexes: list[PassageIndex],
              similarity: Callable[[str, str], float | None] | None = None,
              calibration: Calibration | None = None,
              reader: Callable[[str, str], float | None] | None = None) -> Attribution:
    """Find the passages that support ``answer`` to ``question`` and judge how well they do.

    Each sentence of the answer (``claims``) is matched to the passages that cover it; the sources are
    those passages, best first (see the module docstring).

    Args:
        question: the user's question as typed.
        answer: the model's whole answer (thinking left out).
        indexes: the selected documents' passage indexes (every mode: the sources are looked for in the
            whole documents, whatever part of them the model read).
        similarity: ``similarity(question, sentence)``, MiniLM's cosine (None, or a function returning None:
            not measured; ``verdict.Signals.similarity``).
        calibration: the answering model's verdict parameters (``calibration.calibration_for``); None: the model
            has none, and only the rules that do not depend on it (the answer abstains, the question names what
            the documents never do) give ⚠, every other answer ◐ with its sources.
        reader: ``reader(question, sentence)``, the answering model's P(yes) that the top source sentence answers the
            question (``verdict.Signals.reader_yes``); None, or a function returning None: not asked. Asked only for
            an answer the verdict model judges.

    Returns:
        The attribution; ``sources`` is empty when the verdict is ``not_found``.
    """
    started = time.perf_counter()
    weights = _Weights(indexes)
    q_words = set(words(question))
    passages, terms, relevance, near = [], [], [], []
    for ix in indexes:
        for p, t, window in zip(ix.passages, ix.terms, ix.windows):
            passages.append(p)
            terms.append(t)
            relevance.append(weights.share(q_words, window))
            near.append(relevance[-1] + weights.share(q_words, t))  # ranks the closest passage: its own words first
    answer = without_headings(answer, {ix.passages[0].name for ix in indexes if ix.passages})
    abstained = is_abstention(answer)
    if abstained:
        return _not_found(passages, near, abstained, started, note="The answer itself says so.")
    missing = unnamed(question, frozenset().union(*(ix.spellings for ix in indexes)))
    if missing:
        names = ", ".join(f"“{m}”" for m in missing)
        return _not_found(passages, near, abstained, started, note=f"The documents never name {names}.")
    stated = claims(question, answer)
    if not passages or not stated:
        return _not_found(passages, near, abstained, started, note="The answer states nothing to check.")
    covers = [_cover(added, weights, terms, relevance) for added in stated]
    chosen = list(dict.fromkeys(i for cover in covers for i in cover))  # in answer order, once each
    judged = calibration is not None and calibration.shows_not_found  # the verdict model's ⚠ may be shown
    if not covers[0]:
        if judged:
            return _not_found(passages, near, abstained, started, 0.0,
                              "No passage of the documents holds what the answer says.")
        return _unjudged(passages, near, abstained, started, calibration)
    said = set().union(*stated)
    restates = not said - q_words  # it only repeats the question's words: nothing to confirm
    spans = sentence_spans(answer)
    first_text = answer[slice(*spans[0])] if spans else answer
    specific = set(words(" ".join(verdict.specifics(first_text)))) - q_words
    cosine = similarity(question, passages[covers[0][0]].text) if similarity is not None else None
    signals = verdict.measure(stated[0], said, q_words, covers[0], chosen, terms, relevance, weights.share, specific,
                              restates, cosine)
    rank = {i: near[i] + weights.share(said, terms[i]) for i in chosen}  # about the question, holding the answer
    ranked = sorted(chosen, key=rank.__getitem__, reverse=True)
    yes = reader(question, passages[ranked[0]].text) if reader is not None and not verdict.ruled_out(signals) else None
    if yes is not None:
        signals = replace(signals, reader_yes=max(0.0, min(1.0, yes)))
    confidence, grounding = 0.0, "partial"
    if calibration is not None:
        confidence = verdict.probability(signals, calibration.intercept, calibration.coefficients)
        grounding = verdict.judge(signals, confidence,
                                  calibration.supported_at if calibration.shows_supported else math.inf,
                                  calibration.not_found_below)
        grounding = "partial" if grounding == "not_found" and not judged else grounding
    if grounding == "not_found":
        note = ("No passage of the documents holds what the answer says." if signals.support < verdict.PARTIAL else
                "The passages that hold the answer's words are not about the question.")
        return _not_found(passages, near, abstained, started, signals.support, note, confidence, signals)
    sources = [Source.of(passages[i], rank[i]) for i in ranked]
    sources = sources[:MAX_SOURCES]
    return Attribution(grounding, sources, None, round(signals.support, 4), round(signals.relevance, 4), abstained,
                       time.perf_counter() - started, "" if calibration is not None else UNCALIBRATED,
                       round(confidence, 4), signals.to_dict())


def _unjudged(passages: list[Passage], near: list[float], abstained: bool, started: float,
              calibration: Calibration | None) -> Attribution:
    """◐ for an answer no passage covers, where the verdict model's ⚠ is off (no calibration, or one whose held-out
    false rate is too high): no sources, the passage closest to the question offered."""
    best = max(range(len(passages)), key=near.__getitem__)
    offer = Source.of(passages[best], near[best] / 2) if near[best] > 0 else None
    return Attribution("partial", [], offer, 0.0, round(near[best] / 2, 4), abstained, time.perf_counter() - started,
                       UNCALIBRATED if calibration is None else "No passage of the documents holds what the answer "
                       "says; check it against the closest passage.")


def _cover(added: set[str], weights: _Weights, terms: list[frozenset[str]], relevance: list[float]) -> list[int]:
    """The passages that cover one statement, greedily: the best on ``share + RELEVANCE_WEIGHT * relevance``,
    then the best for what it left, while each holds ``MIN_GAIN`` of the statement (at most
    ``PASSAGES_PER_CLAIM``). Returns passage indexes, best first (empty when none shares a word)."""
    left, out = set(added), []
    for _ in range(PASSAGES_PER_CLAIM):
        held = [i for i in range(len(terms)) if not left.isdisjoint(terms[i])]
        if not held:
            break
        best = max(held, key=lambda i: weights.share(left, terms[i]) + RELEVANCE_WEIGHT * relevance[i])
        if out and weights.share(added, terms[best] & left) < MIN_GAIN:
            break
        out.append(best)
        left -= terms[best]
        if not left:
            break
    return out


def _not_found(passages: list[Passage], near: list[float], abstained: bool, started: float,
               support: float = 0.0, note: str = "", confidence: float = 0.0,
               signals: verdict.Signals | None = None) -> Attribution:
    """The ``not_found`` verdict, with the passage closest to the question (``near``: the question's words
    in each passage plus in its neighbourhood, 0..2) when it shares any of its words; ``confidence`` and
    ``signals`` when the verdict model judged it (``verdict``)."""
    if not passages:
        return Attribution("not_found", [], None, 0.0, 0.0, abstained, time.perf_counter() - started,
                           "The selected documents have no text.")
    best = max(range(len(passages)), key=near.__getitem__)
    offer = Source.of(passages[best], near[best] / 2) if near[best] > 0 else None
    return Attribution("not_found", [], offer, round(support, 4), round(near[best] / 2, 4), abstained,
                       time.perf_counter() - started, note, round(confidence, 4),
                       signals.to_dict() if signals is not None else {})
