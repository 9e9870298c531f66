"""The verdict as a user meets it, and its fit: the tables ``citations.py --set squad2`` prints, and the logistic
model ``--fit`` fits (``backend/grounding/fit.py``) on 6 of the 8 SQuAD 2.0 tuning articles to judge the others (a
model's calibration is written by ``python -m backend.grounding.calibrate``, by folds of every article).

An answer is **right** when it contains a gold answer (SQuAD-normalised); an answer to an unanswerable question is
never right. The verdict table counts, for right answers, wrong answers to answerable questions and answers to
unanswerable ones, how many got each verdict; then the precision and recall of ✓ (a check mark on a right answer)
and of ⚠ (not found on an unanswerable question).
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from squad import percentile

from backend.grounding import Calibration, verdict
from backend.grounding import fit as fitting
from backend.grounding.fit import wilson
from backend.grounding.tuning import contains_gold

VERDICTS = ("supported", "partial", "not_found")
SYMBOL = {"supported": "✓ Supported", "partial": "◐ Partly supported", "not_found": "⚠ Not found"}


def right(item: dict, answer: str) -> bool:
    """The answer contains a gold answer (never, for an unanswerable question)."""
    return contains_gold(answer, item["golds"])


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


def fit(dumped: dict, modes: list[str], titles: set[str]) -> None:
    """Fit the verdict (``backend.grounding.fit``) on ``titles``' answers in every one of ``modes`` together; print
    its block and apply it to every answer in ``dumped``."""
    data = [(r, graded(it, r, group)) for mode in modes for it, r, group in rows(dumped, mode, titles)]
    params = fitting.fit([g for _, g in data])
    modelled = [(r, g.group) for r, g in data if g.modelled]
    for r, g in data:
        if g.modelled:
            r["confidence"] = params.probability(g)
    print("\n# --- fitted by benchmarks/citations.py --set squad2 --fit ---")
    print(f"INTERCEPT = {params.intercept:.4f}")
    print("COEFFICIENTS = {" + ", ".join(f'"{k}": {v:.4f}' for k, v in params.coefficients.items()) + "}")
    print(f"SUPPORTED_AT = {params.supported_at:.4f}\nNOT_FOUND_BELOW = {params.not_found_below:.4f}")
    print(f"# --- end of the fitted block --- ({len(modelled)} answers of {len(titles)} articles, modes "
          f"{', '.join(modes)}: {sum(g == 'right' for _, g in modelled)} right)")
    ceiling(modelled)
    apply(dumped, params)


def graded(item: dict, r: dict, group: str) -> fitting.Graded:
    """A dumped answer as the fit sees it."""
    return fitting.Graded(item["title"], group, verdict.Signals(**r["signals"]) if r.get("signals") else None,
                          r["grounding"])


def ceiling(modelled: list[tuple[dict, str]]) -> None:
    """Print the precision of ✓ at its best thresholds on the fit (the most any threshold on this model reaches),
    at 5, 10, 20 and 40 check marks (those there are answers for)."""
    ranked = sorted(((r["confidence"], g == "right") for r, g in modelled), reverse=True)
    total = max(1, sum(ok for _, ok in ranked))
    cells = []
    for n in (n for n in (5, 10, 20, 40) if n <= len(ranked)):
        hits = sum(ok for _, ok in ranked[:n])
        cells.append(f"top {n}: {hits / n:.2f} (recall {hits / total:.2f}, p >= {ranked[n - 1][0]:.3f})")
    print("# ✓ precision reachable on the fit: " + "; ".join(cells))


def apply(dumped: dict, params: fitting.Params) -> None:
    """Re-judge every answer with signals in ``dumped`` with these parameters (the rules' verdicts stay)."""
    for it in dumped["items"]:
        for r in it["results"].values():
            if r.get("signals"):
                s = verdict.Signals(**r["signals"])
                r["confidence"] = verdict.probability(s, params.intercept, params.coefficients)
                r["grounding"] = verdict.judge(s, r["confidence"], params.supported_at, params.not_found_below)


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


FIT_ARTICLES = 6  # of the 8 SQuAD 2.0 tuning articles; the other 2 report the fit


def every_mark(calibration: Calibration) -> Calibration:
    """``calibration`` with both marks allowed whatever its held-out figures, so that the tables measure the verdict
    as fitted (the app shows a mark only where the figures allow it)."""
    return replace(calibration, held_out={"supported_precision": 1.0, "not_found_false_rate": 0.0})


def squad2_report(dumped: dict, refit: bool) -> None:
    """The verdict tables (``table``) per mode: on the fit articles and the others, refitting first with
    ``refit``."""
    titles = list(dict.fromkeys(it["title"] for it in dumped["items"]))
    fitted, held = set(titles[:FIT_ARTICLES]), set(titles[FIT_ARTICLES:])
    modes = [m for m in dumped["args"]["modes"] if m != "oracle"]
    if refit:
        fit(dumped, modes, fitted)
    for mode in modes:
        table(dumped, mode, fitted, f"Fit articles ({', '.join(sorted(fitted))})")
        if held:
            table(dumped, mode, held, f"Articles the fit never saw ({', '.join(sorted(held))})")
