"""The verdict as a user meets it, and its fit: the tables ``citations.py --set squad2`` prints, and the logistic
model ``--fit`` fits on 6 of the 8 SQuAD 2.0 tuning articles (written as the model's calibration,
``backend/grounding/calibration.py``, with ``--calibration-out``).

An answer is **right** when it contains a gold answer (SQuAD-normalised); an answer to an unanswerable question is
never right. The verdict table counts, for right answers, wrong answers to answerable questions and answers to
unanswerable ones, how many got each verdict; then the precision and recall of ✓ (a check mark on a right answer)
and of ⚠ (not found on an unanswerable question).
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
from answers import normalize
from squad import percentile

from backend.grounding import Calibration, verdict

VERDICTS = ("supported", "partial", "not_found")
SYMBOL = {"supported": "✓ Supported", "partial": "◐ Partly supported", "not_found": "⚠ Not found"}
PRECISION_GOAL, FALSE_NOT_FOUND_CAP = 0.92, 0.12  # the fit's margins under the 0.9 and 0.15


def right(item: dict, answer: str) -> bool:
    """The answer contains a gold answer (never, for an unanswerable question)."""
    norm = normalize(answer)
    return any(normalize(g) and normalize(g) in norm for g in item["golds"])


def rows(dumped: dict, mode: str, titles: set[str] | None = None) -> list[tuple[dict, dict, str]]:
    """``(item, result, group)`` for every answer of ``mode`` (of the ``titles`` articles): group ``right``,
    ``wrong`` (answerable, not right) or ``unanswerable``."""
    out = []
    for it in dumped["items"]:
        r = it["results"].get(mode)
        if r is None or (titles is not None and it["title"] not in titles):
            continue
        group = "unanswerable" if it["kind"] != "answerable" else "right" if right(it, r["answer"]) else "wrong"
        out.append((it, r, group))
    return out


def table(dumped: dict, mode: str, titles: set[str] | None, label: str) -> dict:
    """Print the verdict table and its precision/recall for one mode; return the figures."""
    rs = rows(dumped, mode, titles)
    groups = ("right", "wrong", "unanswerable")
    count = {(g, v): sum(1 for _, r, gg in rs if gg == g and r["grounding"] == v) for g in groups for v in VERDICTS}
    size = {g: sum(1 for *_, gg in rs if gg == g) for g in groups}
    print(f"\n{label}, {mode}: {len(rs)} answers\n")
    print(f"| verdict | right answers ({size['right']}) | wrong answers ({size['wrong']}) | "
          f"unanswerable questions ({size['unanswerable']}) |\n|---|---:|---:|---:|")
    for v in VERDICTS:
        print(f"| {SYMBOL[v]} | {count['right', v]} | {count['wrong', v]} | {count['unanswerable', v]} |")
    ticked = sum(count[g, "supported"] for g in groups)
    answerable = size["right"] + size["wrong"]
    out = {"supported_precision": count["right", "supported"] / ticked if ticked else None,
           "supported_recall": count["right", "supported"] / size["right"] if size["right"] else None,
           "not_found_unanswerable": count["unanswerable", "not_found"] / size["unanswerable"]
           if size["unanswerable"] else None,
           "not_found_answerable": (count["right", "not_found"] + count["wrong", "not_found"]) / answerable
           if answerable else None,
           "accuracy": size["right"] / answerable if answerable else None,
           "supported_coverage": (count["right", "supported"] + count["wrong", "supported"]) / answerable
           if answerable else None, "answers": len(rs)}
    flagged = sum(count[g, "not_found"] for g in groups)
    out["not_found_precision"] = count["unanswerable", "not_found"] / flagged if flagged else None
    ms = [1000 * r["metrics"]["attribution_s"] for _, r, _ in rs]
    print(f"\n✓ precision {_f(out['supported_precision'])} ({count['right', 'supported']}/{ticked}), recall "
          f"{_f(out['supported_recall'])}; ⚠ on unanswerable {_f(out['not_found_unanswerable'])}, on answerable "
          f"{_f(out['not_found_answerable'])}, ⚠ precision {_f(out['not_found_precision'])}; answerable accuracy "
          f"{_f(out['accuracy'])}; attribution {statistics.median(ms):.1f} / {percentile(ms, 0.95):.1f} ms p50 / p95")
    return out


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def fit(dumped: dict, modes: list[str], titles: set[str]) -> tuple[float, dict, float, float]:
    """Fit the verdict's logistic model on ``titles``' answers in every one of ``modes`` together (those the rules
    did not decide) and choose its two thresholds; print them and apply them to every answer in ``dumped``.

    Returns:
        ``(intercept, coefficients, supported_at, not_found_below)``, a calibration's parameters.
    """
    from sklearn.linear_model import LogisticRegression

    data = [(r, group) for mode in modes for _, r, group in rows(dumped, mode, titles)]
    modelled = [(r, g) for r, g in data if _modelled(r)]
    x = np.array([[r["signals"][f] for f in verdict.FEATURES] for r, _ in modelled])
    y = np.array([g == "right" for _, g in modelled])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    intercept, coefficients = float(model.intercept_[0]), dict(zip(verdict.FEATURES, map(float, model.coef_[0])))
    p = model.predict_proba(x)[:, 1]
    for (r, _), pi in zip(modelled, p):
        r["confidence"] = float(pi)
    supported_at = _supported_threshold(modelled)
    not_found_below = _not_found_threshold(data, supported_at)
    print("\n# --- fitted by benchmarks/citations.py --set squad2 --fit ---")
    print(f"INTERCEPT = {intercept:.4f}")
    print("COEFFICIENTS = {" + ", ".join(f'"{k}": {v:.4f}' for k, v in coefficients.items()) + "}")
    print(f"SUPPORTED_AT = {supported_at:.4f}\nNOT_FOUND_BELOW = {not_found_below:.4f}")
    print(f"# --- end of the fitted block --- ({len(modelled)} answers of {len(titles)} articles, modes "
          f"{', '.join(modes)}: {int(y.sum())} right)")
    ceiling(modelled)
    apply(dumped, intercept, coefficients, supported_at, not_found_below)
    return intercept, coefficients, supported_at, not_found_below


def write_calibration(path: Path, model: Path, params: tuple[float, dict, float, float], held: dict,
                      fitted: list[str], held_titles: list[str], mode: str) -> None:
    """Write the calibration JSON of ``model`` (``backend/grounding/calibration.py``): the fitted ``params`` and the
    figures ``table`` measured on the articles the fit never saw (``held``)."""
    import datetime

    from backend.grounding import Calibration
    from backend.inference import model_identity
    from backend.storage.disk import write_atomically

    intercept, coefficients, supported_at, not_found_below = params
    calibration = Calibration(
        model.stem, model_identity(model), f"SQuAD 2.0 adversarial tuning articles (fit: {', '.join(fitted)}; held "
        f"out: {', '.join(held_titles)})", datetime.date.today().isoformat(), round(intercept, 4),
        {k: round(v, 4) for k, v in coefficients.items()}, round(supported_at, 4), round(not_found_below, 4),
        {"supported_precision": held["supported_precision"], "supported_coverage": held["supported_coverage"],
         "not_found_recall": held["not_found_unanswerable"], "not_found_false_rate": held["not_found_answerable"],
         "answerable_accuracy": held["accuracy"], "answers": held["answers"], "articles": held_titles, "mode": mode})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, calibration.to_json().encode())
    print(f"\ncalibration written to {path}: {calibration.summary()}")


def ceiling(modelled: list[tuple[dict, str]]) -> None:
    """Print the precision of ✓ at its best thresholds on the fit (the most any threshold on this model reaches),
    at 5, 10, 20 and 40 check marks."""
    ranked = sorted(((r["confidence"], g == "right") for r, g in modelled), reverse=True)
    total = sum(ok for _, ok in ranked)
    cells = []
    for n in (5, 10, 20, 40):
        hits = sum(ok for _, ok in ranked[:n])
        cells.append(f"top {n}: {hits / n:.2f} (recall {hits / total:.2f}, p >= {ranked[n - 1][0]:.3f})")
    print("# ✓ precision reachable on the fit: " + "; ".join(cells))


def _supported_threshold(modelled: list[tuple[dict, str]]) -> float:
    """The lowest probability whose check marks are right at least ``PRECISION_GOAL`` of the time (the most
    recall at that precision); 1.0 when none is."""
    ranked = sorted(((r["confidence"], g == "right") for r, g in modelled), reverse=True)
    best, hits = 1.0, 0
    for n, (p, ok) in enumerate(ranked, 1):
        hits += ok
        if hits / n >= PRECISION_GOAL and n >= 10:
            best = p
    return best


def _not_found_threshold(data: list[tuple[dict, str]], supported_at: float) -> float:
    """The highest probability below which ⚠ stays on at most ``FALSE_NOT_FOUND_CAP`` of the answerable questions
    (the rules' own ⚠, the model's abstentions among them, count too)."""
    answerable = [(r, g) for r, g in data if g != "unanswerable"]
    ruled = sum(1 for r, _ in answerable if not _modelled(r) and r["grounding"] == "not_found")
    scores = sorted(r["confidence"] for r, _ in answerable if _modelled(r))
    best = 0.0
    for t in sorted(set(scores)):
        if t > supported_at:
            break
        below = sum(s < t for s in scores)
        if (below + ruled) / len(answerable) <= FALSE_NOT_FOUND_CAP:
            best = t
    return best


def apply(dumped: dict, intercept: float, coefficients: dict, supported_at: float, not_found_below: float) -> None:
    """Re-judge every modelled answer in ``dumped`` with this model (the rules' verdicts stay)."""
    for it in dumped["items"]:
        for r in it["results"].values():
            if r.get("signals"):
                s = verdict.Signals(**r["signals"])
                r["confidence"] = verdict.probability(s, intercept, coefficients)
                r["grounding"] = verdict.judge(s, r["confidence"], supported_at, not_found_below)


def _modelled(r: dict) -> bool:
    """The verdict model judged this answer: it has signals and the rule before the model did not decide."""
    return bool(r.get("signals")) and not verdict.ruled_out(verdict.Signals(**r["signals"]))


def unnamed_table(articles: list[dict]) -> None:
    """Print how often ``words.unnamed`` (the question names what the document never does: ⚠ for every model) fires
    on the answerable and the unanswerable questions of ``articles`` (SQuAD 2.0 JSON), each article whole as the
    document, with Wilson 95 % intervals."""
    from backend.grounding.words import spelled, unnamed

    counts = {"answerable": [0, 0], "unanswerable": [0, 0]}
    for art in articles:
        vocabulary = frozenset(w for p in art["paragraphs"] for w in spelled(p["context"]))
        for p in art["paragraphs"]:
            for qa in p["qas"]:
                c = counts["unanswerable" if qa.get("is_impossible") else "answerable"]
                c[0] += bool(unnamed(qa["question"], vocabulary))
                c[1] += 1
    print(f"\n⚠ from the question alone (it names what the document never does), {len(articles)} articles\n")
    print("| questions | marked ⚠ | rate | 95 % interval |\n|---|---:|---:|---|")
    for kind, (hit, n) in counts.items():
        low, high = wilson(hit, n)
        print(f"| {kind} ({n:,}) | {hit:,} | {hit / n:.3f} | {low:.3f}-{high:.3f} |")


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927), 95 % by default."""
    if not n:
        return 0.0, 1.0
    p = hits / n
    centre, half = p + z * z / (2 * n), z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


FIT_ARTICLES = 6  # of the 8 SQuAD 2.0 tuning articles; the other 2 report the fit


def every_mark(calibration: Calibration) -> Calibration:
    """``calibration`` with both marks allowed whatever its held-out figures, so that the tables measure the verdict
    as fitted (the app shows a mark only where the figures allow it)."""
    return replace(calibration, held_out={"supported_precision": 1.0, "not_found_false_rate": 0.0})


def squad2_report(dumped: dict, refit: bool, calibration_out: str | None = None) -> None:
    """The verdict tables (``table``) per mode: on the fit articles and the others, refitting first
    with ``refit``; with ``calibration_out``, the fit and its held-out figures (Auto) written as the model's
    calibration (``backend/grounding/calibration.py``)."""
    titles = list(dict.fromkeys(it["title"] for it in dumped["items"]))
    fitted, held = set(titles[:FIT_ARTICLES]), set(titles[FIT_ARTICLES:])
    modes = [m for m in dumped["args"]["modes"] if m != "oracle"]
    params = fit(dumped, modes, fitted) if refit else None
    figures = {}
    for mode in modes:
        table(dumped, mode, fitted, f"Fit articles ({', '.join(sorted(fitted))})")
        if held:
            figures[mode] = table(dumped, mode, held, f"Articles the fit never saw ({', '.join(sorted(held))})")
    if calibration_out and params and figures:
        mode = "auto" if "auto" in figures else next(iter(figures))
        write_calibration(Path(calibration_out), Path(dumped["args"]["model"]), params, figures[mode],
                          sorted(fitted), sorted(held), mode)
