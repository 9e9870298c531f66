"""Calibrate the answer verdict for one model: ask it the tuning questions, fit the verdict on its answers, measure
the fit by held-out folds of articles, and write the model's calibration.

    python -m backend.grounding.calibrate --model FILE [--out models/calibrations/NAME.json] [--folds 4]
        [--tuning squad2-adversarial-tuning.json] [--articles 8 --per-article 25 --unanswerable 25]
        [--answers ANSWERS.json]

The model answers every question in a fresh chat through the app's own services (``ChatService``, greedy, Auto, the
default ``n_ctx``, the reader asked its yes or no on every judged answer: ``Signals.reader_yes``), each article cut
to ``--doc-tokens`` tokens, uploaded and cached as the Cache button does. Its answers are graded (``tuning.contains_gold``) and the verdict fitted (``fit``): each answer is judged by a fit on the
other folds' articles, and those held-out verdicts give the figures the app reads (a mark is shown only where they
allow: ``calibration.py``). The calibration written holds the fit on every article with those figures; it prints
the held-out precision/coverage curve of ✓ and recall/false rate of ⚠. ``--answers FILE`` keeps the answers (and,
when the file exists, reads them instead of asking: a refit without the model takes seconds).

Measured on this project's 2-core machine (docs/benchmarks.md, "Calibrated per model"): the whole command, 400
answers of the 8 tuning articles, took 11 min 38 s with SmolLM2-135M and 13 min 8 s with Qwen2.5-Coder-0.5B
(``max_tokens`` 128, under the app's 512 to keep it short: the verdict judges mostly the answer's first
statement; about 100 of SmolLM2's answers and 17 of Qwen's ran past 450 characters, near the cap).

This module is a command, like ``app.py``: it builds the app's services (``backend.services``) to answer, the one
import of ``grounding`` above its package (``tests/test_architecture.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from backend.grounding import fit as fitting
from backend.grounding.calibration import Calibration
from backend.grounding.tuning import SHARED_TUNING, contains_gold, tuning_questions
from backend.grounding.verdict import Signals

OWNER = "calibrate"


def grade(answer: dict) -> fitting.Graded:
    """One of ``answer_all``'s answers as the fit sees it. Every answer the verdict model does not judge is ⚠ once
    the verdict's ⚠ is shown (``attribution``: a rule decided, the answer says so itself, or no passage holds it),
    whatever the calibration in force when it was answered showed."""
    group = ("unanswerable" if answer["kind"] != "answerable" else
             "right" if contains_gold(answer["answer"], answer["golds"]) else "wrong")
    signals = Signals(**answer["signals"]) if answer.get("signals") else None
    graded = fitting.Graded(answer["title"], group, signals, "not_found")
    if graded.modelled:
        graded.grounding = answer.get("grounding") or "partial"
    return graded


def answer_all(model: Path, questions_for, max_tokens: int = 128) -> list[dict]:
    """Load ``model`` in the app's services on a fresh data dir, upload and cache each document, and answer every
    question (``questions_for(count_tokens)`` gives ``(docs, questions)``) in a fresh session, Auto, greedy.

    Returns:
        One dict per question: the question's fields and ``answer``, ``grounding``, ``signals`` (its ``done``), and
        ``verdict_s``: seconds from the last token to the verdict (finding the sources, the reader's yes or no).

    Raises:
        SystemExit: the model did not load (its sentence).
    """
    from backend.config import Settings
    from backend.inference import Sampling
    from backend.services import build_services

    data_dir = Path(tempfile.mkdtemp(prefix="kvc-calibrate-"))
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "none", model_path=model, auto_download=False,
                        temperature=0.0, max_tokens=max_tokens, reader_check="always")
    svc = build_services(settings)
    try:
        if not svc.engine.loaded:
            raise SystemExit(svc.model_error)
        docs, questions = questions_for(svc.engine.count_tokens)
        doc_ids = {}
        for title, text in docs:
            path = data_dir / f"{title}.txt"
            path.write_text(text, encoding="utf-8")
            row, _ = svc.documents.upload(OWNER, path)
            svc.primer.cache_documents(OWNER, [row.doc_id])
            doc_ids[title] = row.doc_id
        sampling, started, out = Sampling(max_tokens=max_tokens, temperature=0.0), time.perf_counter(), []
        for n, q in enumerate(questions, 1):
            sid = svc.sessions.create(OWNER)
            try:
                done = next(e for e in svc.chat.stream_turn(OWNER, sid, q.question, [doc_ids[q.title]], sampling,
                                                             mode="auto") if e.kind == "done")
            finally:
                svc.sessions.delete(OWNER, sid)
                svc.chat.forget_session(OWNER, sid)
            out.append({**asdict(q), "answer": done.text, "grounding": done.data.get("grounding"),
                        "signals": done.data.get("signals"), "verdict_s": done.data["metrics"].get("attribution_s")})
            if n % 25 == 0:
                print(f"  {n}/{len(questions)} answered, {time.perf_counter() - started:.0f} s", file=sys.stderr,
                      flush=True)
        return out
    finally:
        svc.close()


def calibrate(answers: list[dict], model_name: str, fingerprint: str, tuning_set: str, folds: int) -> Calibration:
    """Fit and measure the verdict on graded ``answers`` (``answer_all``'s dicts); print the held-out figures and
    curves; return the calibration (the fit on every article, with the held-out figures).

    Raises:
        ValueError: too few answers or articles to fit and hold out.
    """
    graded = [grade(a) for a in answers]
    verdicts, probs = fitting.cross_validate(graded, folds)
    held = fitting.figures(graded, verdicts)
    split = fitting.folds_of(graded, folds)
    print(f"\n{len(graded)} answers of {len({g.article for g in graded})} articles, {len(split)} folds of whole "
          f"articles; each answer judged by the fit on the other folds:\n")
    for name in ("answerable_accuracy", "supported_precision", "supported_coverage", "not_found_recall",
                 "not_found_false_rate"):
        hits, n = held[f"{name}_counts"]
        ci = held[f"{name}_ci"]
        print(f"  {name}: " + (f"{held[name]:.3f} ({hits}/{n}, 95 % {ci[0]:.2f}-{ci[1]:.2f})" if n else "none"))
    print("\n" + "\n".join(fitting.curve(graded, probs)))
    waits = sorted(a["verdict_s"] for a in answers if a.get("verdict_s") is not None)
    if waits:
        print(f"\nthe verdict after the last token: median {waits[len(waits) // 2]:.3f} s, "
              f"p95 {waits[min(len(waits) - 1, int(0.95 * len(waits)))]:.3f} s ({len(waits)} answers)")
    params = fitting.fit(graded)
    held.update(articles=[t for group in split for t in group], folds=len(split), mode="auto")
    calibration = Calibration(model_name, fingerprint, tuning_set, datetime.date.today().isoformat(),
                              round(params.intercept, 4), {k: round(v, 4) for k, v in params.coefficients.items()},
                              round(params.supported_at, 4), round(params.not_found_below, 4), held)
    print(f"\n{calibration.summary()}")
    return calibration


def main(argv: list[str] | None = None) -> int:
    """The command (module docstring); returns its exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the GGUF to calibrate")
    parser.add_argument("--out", help="the calibration to write (default models/calibrations/<model>.json)")
    parser.add_argument("--tuning", default=str(SHARED_TUNING), help="SQuAD 2.0 JSON of tuning articles")
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--per-article", type=int, default=25, help="answerable questions per article")
    parser.add_argument("--unanswerable", type=int, default=25, help="unanswerable questions per article")
    parser.add_argument("--doc-tokens", type=int, default=6000, help="each article cut to this many tokens")
    parser.add_argument("--folds", type=int, default=4, help="held-out folds of whole articles")
    parser.add_argument("--answers", help="keep the answers here; read them instead of asking when it exists")
    args = parser.parse_args(argv)
    from backend.inference import model_identity

    model = Path(args.model)
    if not model.is_file():
        print(f"{model} is not a file; give the GGUF to calibrate with --model.", file=sys.stderr)
        return 2
    kept = Path(args.answers) if args.answers else None
    if kept is not None and kept.is_file():
        answers = json.loads(kept.read_text(encoding="utf-8"))
    else:
        started = time.perf_counter()

        def questions_for(count_tokens):
            return tuning_questions(Path(args.tuning), args.articles, args.per_article, args.unanswerable,
                                    args.doc_tokens, count_tokens)
        try:
            answers = answer_all(model, questions_for)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"{len(answers)} answers in {time.perf_counter() - started:.0f} s", flush=True)
        if kept is not None:
            kept.write_text(json.dumps(answers, indent=1), encoding="utf-8")
    try:
        calibration = calibrate(answers, model.stem, model_identity(model),
                                f"SQuAD 2.0 adversarial tuning articles ({args.folds} folds of whole articles)",
                                args.folds)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    from backend.config import Settings
    from backend.storage.disk import write_atomically

    out = Path(args.out) if args.out else Settings().models_dir / "calibrations" / f"{model.stem.lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    write_atomically(out, calibration.to_json().encode())
    print(f"calibration written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
