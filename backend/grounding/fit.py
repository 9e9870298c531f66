"""The verdict's fit for one model, from its graded answers: a logistic model over ``verdict.FEATURES``, its two
thresholds, and its figures measured by folds of whole articles (never of questions, so no article's answers both
fit and judge it).

An answer is graded ``right`` (it holds a gold answer), ``wrong`` (an answerable question, not right) or
``unanswerable`` (SQuAD 2.0's ``is_impossible``; never right). Answers the rule before the model decided
(``verdict.ruled_out``), and those with no signals (the model said the documents do not hold it; no source), keep
the verdict given them (``Graded.grounding``: ⚠ where the verdict's ⚠ is shown); the model judges the rest.

The fit is scikit-learn's ``LogisticRegression`` (C=1, L2; Pedregosa et al. 2011). ``supported_at`` is the lowest
probability whose check marks are right at least ``PRECISION_GOAL`` (0.92: the issue's 0.9 with a margin) of the
time with 10 or more of them, else 1.0 (✓ never given); ``not_found_below`` the highest probability under which ⚠
falls on at most ``FALSE_NOT_FOUND_CAP`` (0.12: under the issue's 0.15) of the answerable questions, the rule's ⚠
included. Intervals are Wilson's (1927) at 95 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend.grounding import verdict

PRECISION_GOAL, FALSE_NOT_FOUND_CAP = 0.92, 0.12
GROUPS = ("right", "wrong", "unanswerable")


@dataclass
class Graded:
    """One answer as the fit sees it.

    Attributes:
        article: the article (document) it was asked of: folds split on it.
        group: ``right``, ``wrong`` or ``unanswerable``.
        signals: the verdict's signals (``verdict.Signals``), None when the answer had none.
        grounding: its verdict where the model does not judge it (``calibrate.grade``: ⚠ for every such answer).
    """

    article: str
    group: str
    signals: verdict.Signals | None
    grounding: str

    @property
    def modelled(self) -> bool:
        """The logistic model judges this answer: it has signals and the rule before the model did not decide."""
        return self.signals is not None and not verdict.ruled_out(self.signals)


@dataclass(frozen=True)
class Params:
    """A fitted verdict: ``intercept`` and ``coefficients`` (by feature name) of the logistic model, and the
    thresholds ``supported_at`` and ``not_found_below`` (probabilities, ``verdict.judge``)."""

    intercept: float
    coefficients: dict[str, float]
    supported_at: float
    not_found_below: float

    def probability(self, answer: Graded) -> float:
        """The model's probability that ``answer`` is right (0 for one it does not judge)."""
        return verdict.probability(answer.signals, self.intercept, self.coefficients) if answer.modelled else 0.0

    def judge(self, answer: Graded) -> str:
        """``answer``'s verdict under these parameters (its own where the model does not judge)."""
        if not answer.modelled:
            return answer.grounding
        return verdict.judge(answer.signals, self.probability(answer), self.supported_at, self.not_found_below)


def fit(answers: Sequence[Graded]) -> Params:
    """Fit the logistic model on ``answers``' modelled ones and choose both thresholds (module docstring).

    Raises:
        ValueError: fewer than 2 modelled answers, or all of one class (nothing to fit).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    modelled = [a for a in answers if a.modelled]
    y = np.array([a.group == "right" for a in modelled])
    if len(modelled) < 2 or y.all() or not y.any():
        raise ValueError(f"{len(modelled)} answers for the verdict model to judge, {int(y.sum())} of them right: "
                         "too few to fit; ask more questions.")
    x = np.array([[getattr(a.signals, f) for f in verdict.FEATURES] for a in modelled])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    params = Params(float(model.intercept_[0]), dict(zip(verdict.FEATURES, map(float, model.coef_[0]))), 1.0, 0.0)
    p = [params.probability(a) for a in modelled]
    supported_at = supported_threshold(p, list(y))
    return Params(params.intercept, params.coefficients, supported_at,
                  not_found_threshold(answers, params, supported_at))


def supported_threshold(p: Sequence[float], right: Sequence[bool]) -> float:
    """The lowest probability whose check marks (``p >= it``) are right at least ``PRECISION_GOAL`` of the time,
    counting 10 or more of them (answers tied at a threshold all get the mark); 1.0 when none is."""
    ranked = sorted(zip(p, right), reverse=True)
    best, hits = 1.0, 0
    for n, (pi, ok) in enumerate(ranked, 1):
        hits += ok
        tie_ends = n == len(ranked) or ranked[n][0] < pi
        if tie_ends and hits / n >= PRECISION_GOAL and n >= 10:
            best = pi
    return best


def not_found_threshold(answers: Sequence[Graded], params: Params, supported_at: float) -> float:
    """The highest probability below which ⚠ falls on at most ``FALSE_NOT_FOUND_CAP`` of the answerable
    questions, counting the ⚠ the model does not decide (the rule's, the answer's own)."""
    answerable = [a for a in answers if a.group != "unanswerable"]
    if not answerable:
        return 0.0
    ruled = sum(1 for a in answerable if not a.modelled and a.grounding == "not_found")
    scores = sorted(params.probability(a) for a in answerable if a.modelled)
    best = 0.0
    for t in sorted(set(scores)):
        if t > supported_at:
            break
        if (sum(s < t for s in scores) + ruled) / len(answerable) <= FALSE_NOT_FOUND_CAP:
            best = t
    return best


def folds_of(answers: Sequence[Graded], folds: int) -> list[list[str]]:
    """The articles split into ``folds`` groups, in order of first appearance, dealt round-robin (at most one
    group per article)."""
    articles = list(dict.fromkeys(a.article for a in answers))
    k = max(1, min(folds, len(articles)))
    return [articles[i::k] for i in range(k)]


def cross_validate(answers: Sequence[Graded], folds: int = 4) -> tuple[list[str], list[float]]:
    """Each answer's verdict and probability from a fit on the other folds' articles (``folds_of``).

    Returns:
        ``(verdicts, probabilities)``, in ``answers``' order.

    Raises:
        ValueError: fewer than 2 articles (no fold would be held out), or a fold's fit had nothing to fit.
    """
    groups = folds_of(answers, folds)
    if len(groups) < 2:
        raise ValueError("the tuning answers come from one article; held-out folds need at least two.")
    verdicts, probs = [""] * len(answers), [0.0] * len(answers)
    for held in groups:
        params = fit([a for a in answers if a.article not in held])
        for i, a in enumerate(answers):
            if a.article in held:
                verdicts[i], probs[i] = params.judge(a), params.probability(a)
    return verdicts, probs


def figures(answers: Sequence[Graded], verdicts: Sequence[str]) -> dict:
    """The figures a calibration keeps (``calibration.py``'s ``held_out``) for these verdicts, each with its
    Wilson 95 % interval as ``<name>_ci``: ``supported_precision`` (✓ on right answers, None without ✓),
    ``supported_coverage`` (✓ on answerable questions), ``not_found_recall`` (⚠ on unanswerable questions),
    ``not_found_false_rate`` (⚠ on answerable questions), ``answerable_accuracy``, ``answers``."""
    count = {(g, v): 0 for g in GROUPS for v in ("supported", "partial", "not_found")}
    for a, v in zip(answers, verdicts):
        count[a.group, v] = count.get((a.group, v), 0) + 1
    size = {g: sum(1 for a in answers if a.group == g) for g in GROUPS}
    answerable = size["right"] + size["wrong"]
    ticked = sum(count[g, "supported"] for g in GROUPS)
    parts = {"supported_precision": (count["right", "supported"], ticked),
             "supported_coverage": (count["right", "supported"] + count["wrong", "supported"], answerable),
             "not_found_recall": (count["unanswerable", "not_found"], size["unanswerable"]),
             "not_found_false_rate": (count["right", "not_found"] + count["wrong", "not_found"], answerable),
             "answerable_accuracy": (size["right"], answerable)}
    out: dict = {"answers": len(answers)}
    for name, (hits, n) in parts.items():
        out[name] = round(hits / n, 4) if n else None
        out[f"{name}_ci"] = [round(x, 4) for x in wilson(hits, n)] if n else None
        out[f"{name}_counts"] = [hits, n]
    return out


def curve(answers: Sequence[Graded], probs: Sequence[float]) -> list[str]:
    """The precision/coverage curve of ✓ and the recall/false-rate curve of ⚠ over held-out probabilities
    (``cross_validate``), as Markdown table lines: for ✓ at the top 5, 10, 20, 30 and 50 % of the modelled
    answers; for ⚠ at probability cut-offs, with the rule's and the answer's own ⚠ added to every row."""
    modelled = sorted(((p, a.group == "right") for a, p in zip(answers, probs) if a.modelled), reverse=True)
    answerable = sum(a.group != "unanswerable" for a in answers)
    lines = ["| ✓ given to the top | p at least | precision (95 % interval) | coverage of answerable |",
             "|---|---:|---:|---:|"]
    for share in (0.05, 0.1, 0.2, 0.3, 0.5):
        n = max(1, round(share * len(modelled)))
        hits = sum(ok for _, ok in modelled[:n])
        low, high = wilson(hits, n)
        lines.append(f"| {share:.0%} ({n}) | {modelled[n - 1][0]:.3f} | {hits / n:.2f} ({low:.2f}-{high:.2f}) | "
                     f"{n / answerable:.2f} |" if modelled and answerable else "| — | — | — | — |")
    fixed = [(a.group, a.grounding == "not_found") for a, p in zip(answers, probs) if not a.modelled]
    lines += ["", "| ⚠ below p | ⚠ on unanswerable (recall) | ⚠ on answerable (false rate) |", "|---:|---:|---:|"]
    unanswerable = len(answers) - answerable
    for cut in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        flagged = [(a.group, p < cut) for a, p in zip(answers, probs) if a.modelled] + fixed
        rec = sum(f for g, f in flagged if g == "unanswerable")
        false = sum(f for g, f in flagged if g != "unanswerable")
        lines.append(f"| {cut:.1f} | {rec / max(1, unanswerable):.2f} ({rec}/{unanswerable}) | "
                     f"{false / max(1, answerable):.2f} ({false}/{answerable}) |")
    return lines


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the proportion ``hits / n`` (Wilson 1927), 95 % at the default ``z``; (0, 1) when
    ``n`` is 0."""
    if not n:
        return 0.0, 1.0
    p = hits / n
    centre, half = p + z * z / (2 * n), z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)
