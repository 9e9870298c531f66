"""The verdict on an answer, judged on what it claims: a logistic model over signals of whether one passage of the
documents states that claim *about what the question asks*, not merely shares its words.

The signals (``Signals``), each measured on the answer's first statement (a small model's answer comes first):

* ``support``: the IDF-weighted share of what the statement adds (its content words less the question's) that its
  best passages hold (``attribution``'s ``first``); ``overall``: the same for every statement together;
* ``relevance``: the question's words in and around the first source (its sentence and the neighbours);
* ``question_here``: the question's words in the first source sentence itself;
* ``colocated``: the best passage holding both: ``max`` over sentences of ``min(share of the claim in it, share of
  the question around it)`` - the claim in one place and the question's words in another score low;
* ``specifics_away``: the share of the answer's specifics (numbers, dates, names the question does not use) that
  occur only in sentences away from the question's words (a figure the document gives, for another event);
* ``restates``: the answer adds nothing to the question's words;
* ``similarity``: MiniLM's cosine of the question and the first source sentence (0.5 when the embedder is not
  loaded yet: the answer never waits for it);
* ``reader_yes``: the answering model asked whether the top source sentence answers the question, its P(yes) against
  P(no) (``backend.chat.reader_check``; 0.5 when it was not asked: a remote model, or a calibration whose probability
  decides no mark shown or gives it no weight, ``Calibration.weighs``).

First a rule (``ruled_out``): when the sources hold less than ``PARTIAL`` of what the first statement adds, or sit
away from every word of the question (``MIN_RELEVANCE``), the verdict is ⚠ ``not_found``. Otherwise ``probability``
is the logistic model's estimate that the answer is right, and ``judge`` turns it into the three verdicts: ✓
``supported`` at ``SUPPORTED_AT`` or above, ⚠ ``not_found`` below ``NOT_FOUND_BELOW``, ◐ ``partial`` between.

The coefficients and thresholds belong to the model whose answers they were fitted on: they live in that model's
calibration (``calibration.py``, a JSON keyed by the model file's fingerprint), fitted (``fit.py``: scikit-learn's
``LogisticRegression``, C=1) by ``python -m backend.grounding.calibrate --model FILE`` on the model's answers to the
8 SQuAD 2.0 adversarial tuning articles, its figures measured by held-out folds of whole articles (docs/benchmarks.md,
"Calibrated per model"). ``supported_at`` is the lowest probability whose check marks are right at least 0.92 of the
time on the fit (0.9, with a margin), ``1.0`` when no threshold is; ``not_found_below`` the highest probability under
which ⚠ stays on at most 0.12 of the answerable questions, the rule's included. Whether a mark is shown at all is the
calibration's held-out figures' call (``Calibration.shows_supported``, ``shows_not_found``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

FEATURES = ("support", "overall", "relevance", "question_here", "colocated", "specifics_away", "restates",
            "similarity", "reader_yes")

PARTIAL = 0.15  # least support of the answer's first statement for any verdict but not_found (the rule before the model)
MIN_RELEVANCE = 0.05  # least relevance (question words around the first source) for any verdict but not_found


@dataclass(frozen=True)
class Signals:
    """The verdict's inputs for one answer (see the module docstring), each 0..1."""

    support: float
    overall: float
    relevance: float
    question_here: float
    colocated: float
    specifics_away: float
    restates: float
    similarity: float = 0.5
    reader_yes: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def probability(signals: Signals, intercept: float, coefficients: dict[str, float]) -> float:
    """The logistic model's probability that the answer is right (0..1).

    Args:
        signals: the answer's signals.
        intercept / coefficients: the model (a ``Calibration``'s); a feature without a coefficient weighs 0.
    """
    z = intercept + sum(coefficients.get(name, 0.0) * getattr(signals, name) for name in FEATURES)
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def ruled_out(signals: Signals) -> bool:
    """The rule before the model: the sources hold less than ``PARTIAL`` of what the first statement adds, or sit
    away from every word of the question (``MIN_RELEVANCE``): ``not_found`` whatever the model says."""
    return signals.support < PARTIAL or signals.relevance < MIN_RELEVANCE


def judge(signals: Signals, p: float, supported_at: float, not_found_below: float) -> str:
    """``supported``, ``partial`` or ``not_found`` for an answer's ``signals`` and their probability ``p`` (see
    the module docstring): ``ruled_out`` first, then the thresholds."""
    if ruled_out(signals):
        return "not_found"
    if p >= supported_at:
        return "supported"
    return "not_found" if p < not_found_below else "partial"


AWAY = 0.3  # a specific is "away" when every sentence holding it has less of the question's words around it than this
_SPECIFIC = re.compile(r"\d(?:[\w,.:/-]*\w)?|(?<=[\s\"“(])[A-Z][\w-]*")  # numbers, dates, names after the first word


def specifics(text: str) -> list[str]:
    """The numbers, dates and capitalised words (after the first word) of ``text``, as written."""
    return _SPECIFIC.findall(text)


def measure(claim: set[str], claims: set[str], q_words: set[str], first_sources: list[int], chosen: list[int],
            terms: list[frozenset[str]], relevance: list[float], share: Callable, specific_words: set[str],
            restates: bool, similarity: float | None = None) -> Signals:
    """The signals of one answer (see the module docstring).

    Args:
        claim: what the first statement adds (content-word stems); ``claims``: every statement's together.
        q_words: the question's content-word stems.
        first_sources: the passages covering the first statement, best first; ``chosen``: every source.
        terms: each passage's content-word stems; ``relevance``: each passage's share of the question's words in
            and around it (0..1).
        share: ``share(words, held) -> float``, the IDF-weighted share of ``words`` in ``held``.
        specific_words: the stems of the answer's specifics less the question's (``specifics``).
        restates: the answer adds nothing to the question's words.
        similarity: MiniLM's cosine of the question and the first source (None: not measured).
    """
    top = first_sources[0]
    held = frozenset().union(*(terms[i] for i in first_sources))
    colocated = max((min(share(claim, t), relevance[i]) for i, t in enumerate(terms) if not claim.isdisjoint(t)),
                    default=0.0)
    away = 0.0
    if specific_words:
        nearest = {w: max((relevance[i] for i, t in enumerate(terms) if w in t), default=0.0) for w in specific_words}
        away = sum(v < AWAY for v in nearest.values()) / len(nearest)
    return Signals(share(claim, held), share(claims, frozenset().union(*(terms[i] for i in chosen))), relevance[top],
                   share(q_words, terms[top]), colocated, away, float(restates),
                   0.5 if similarity is None else max(0.0, min(1.0, similarity)))
