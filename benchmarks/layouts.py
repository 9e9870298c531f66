"""Prompt layouts for a question about one paragraph, compared side by side on SQuAD v1.1 dev, greedy.

    .venv/bin/python benchmarks/layouts.py [--articles 8] [--per-article 25] [--layouts app,direct,...] [--held-out]
        [--model GGUF]

Each question is asked with its gold paragraph laid out every way in ``LAYOUTS``, through llama-cpp-python's
chat completion on the bundled SmolLM2 (``Engine.plain_llama``, whole prompt evaluated each time, 48 tokens),
so layouts differ in the prompt alone. ``app`` is the app's own (``prompts.frame`` with the configured
instructions: the document opening the user turn under its name, between "Context:" and "Question:") and
``direct`` is ``answers.py``'s reference. ``system_doc`` is the app's layout before 2026-11-30 (the document
in a tagged block in the system message, the bare question as the user turn); the ``short_instructions``
and ``app_*`` ones keep the document in the system message but change the instructions or the framing; the
``doc_user`` ones put it in the user turn before the question with other framings; ``app_brief``,
``app_brief_context`` and ``app_direct_instructions`` are the app's layout with shorter instructions, and
``named_context`` names the document on its "Context" line instead of in a heading. ``app_date`` is the
app with the date line in every question (``turn_datetime`` on, at ``answers.NOW``; the default until
2026-12-01, now ``auto``: only questions about time) between "Question:" and the question;
``app_date_after`` puts it after the question. ``app_chunk``, ``app_title`` and ``app_excerpt`` are the app's
layout with the paragraph under the heading a RAG chunk of its article gets (``Warsaw.txt (page 1)``), under the
bare article title, and under "Excerpt from Warsaw": how much the heading alone moves the answers.
The tuning articles (the first of the dev set) are the default, so that choosing a layout never looks at
``answers.py``'s held-out ones. Prints a Markdown table of answer-contains-gold and token F1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from answers import DIRECT_SYSTEM, NOW, direct_messages, oracle_messages, pick, scores

from backend.chat import date_line, dated
from backend.config import Settings
from backend.inference import bundled_path
from backend.services import build_services

ROOT = Path(__file__).resolve().parent.parent
APP = Settings().system_prompt
SUFFIX = "\n\nAnswer the user's question from the documents above, briefly."


def _tagged(paragraph: str, name: str) -> str:
    """The document block of the app's layout before 2026-11-30."""
    return f'<document name="{name}">\n{paragraph}\n</document>'


def _in_system(instructions: str, paragraph: str, name: str) -> str:
    return f"{instructions}\n\nThe user's documents:\n\n{_tagged(paragraph, name)}"


def _pair(messages: list[dict[str, str]]) -> tuple[str, str]:
    return messages[0]["content"], messages[1]["content"]


def _app(paragraph: str, question: str, name: str, instructions: str = APP) -> tuple[str, str]:
    return _pair(oracle_messages(instructions, paragraph, name, question))


# Candidate instructions for the app's layout (``app_*`` rows)
BRIEF = "Answer the question from the documents, briefly. If they do not contain the answer, say so."
BRIEF_CONTEXT = ("You answer questions about the user's documents. Answer from the context, briefly; "
                 "if it does not contain the answer, say so.")
OWN_WORDS = ("You answer questions about the user's documents. Answer in one short sentence, in the documents' own "
             "words. If they do not contain the answer, say so.")


def _date_after(question: str) -> str:
    """The question with the date line after it instead of before it."""
    return f"{question}\n{date_line(NOW)}"


# name -> (system message, user message) for (paragraph, question, document name)
LAYOUTS = {
    "app": _app,
    "direct": lambda p, q, n: _pair(direct_messages(p, q)),
    "app_chunk": lambda p, q, n, t="": _app(p, q, f"{t}.txt (page 1)"),
    "app_title": lambda p, q, n, t="": _app(p, q, t),
    "app_excerpt": lambda p, q, n, t="": _app(p, q, f"Excerpt from {t}"),
    "app_date": lambda p, q, n: _app(p, dated(q, NOW), n),
    "app_date_after": lambda p, q, n: _app(p, _date_after(q), n),
    "app_brief": lambda p, q, n: _app(p, q, n, BRIEF),
    "app_brief_context": lambda p, q, n: _app(p, q, n, BRIEF_CONTEXT),
    "app_own_words": lambda p, q, n: _app(p, q, n, OWN_WORDS),
    "app_direct_instructions": lambda p, q, n: _app(p, q, n, DIRECT_SYSTEM),
    "named_context": lambda p, q, n: (APP, f"Context ({n}): {p}\n\nQuestion: {q}"),
    "doc_user_brief_context": lambda p, q, n: (BRIEF_CONTEXT, f"Context: {p}\n\nQuestion: {q}"),
    "system_doc": lambda p, q, n: (_in_system(APP, p, n), q),
    "short_instructions": lambda p, q, n: (_in_system(DIRECT_SYSTEM, p, n), q),
    "short_instructions_context": lambda p, q, n: (f"{DIRECT_SYSTEM}\n\nContext: {p}", q),
    "app_context": lambda p, q, n: (f"{APP}\n\nContext: {p}", q),
    "app_reminder_after_document": lambda p, q, n: (_in_system(APP, p, n) + SUFFIX, q),
    "doc_user": lambda p, q, n: (APP, f"Context: {p}\n\nQuestion: {q}"),
    "doc_user_tags": lambda p, q, n: (APP, f"Context:\n\n{_tagged(p, n)}\n\nQuestion: {q}"),
    "doc_user_no_cues": lambda p, q, n: (APP, f"The user's documents:\n\n{_tagged(p, n)}\n\n{q}"),
}
TITLED = ("app_chunk", "app_title", "app_excerpt")  # named after the article, as a chunk of it is


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--per-article", type=int, default=25)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--layouts", type=lambda v: v.split(","), default=list(LAYOUTS))
    parser.add_argument("--held-out", action="store_true", help="the last articles instead of the tuning ones")
    parser.add_argument("--dump", help="write every question's answers and scores to this JSON file")
    parser.add_argument("--model", help="the GGUF that answers (default: the bundled SmolLM2)")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="kvc-layouts-"))
    svc = build_services(Settings(data_dir=data, models_dir=data / "none", model_path=Path(args.model) if args.model else bundled_path(ROOT / "models"),
                                  auto_download=False, n_ctx=2048, turn_datetime=False))
    if not svc.engine.loaded:
        raise SystemExit(svc.model_error)
    _, items = pick(args.articles, args.per_article, tuning=not args.held_out)
    names: dict[str, str] = {}
    totals = {k: {"contains": 0.0, "f1": 0.0} for k in args.layouts}
    rows = []
    started = time.perf_counter()
    for i, item in enumerate(items, 1):
        name = names.setdefault(item.paragraph, f"paragraph-{len(names)}.txt")
        rows.append({"question": item.question, "golds": item.golds})
        for layout in args.layouts:
            fn = LAYOUTS[layout]
            system, user = (fn(item.paragraph, item.question, name, item.title) if layout in TITLED
                            else fn(item.paragraph, item.question, name))
            with svc.engine.plain_llama() as llm:
                reply = llm.create_chat_completion([{"role": "system", "content": system},
                                                    {"role": "user", "content": user}],
                                                   temperature=0.0, max_tokens=args.max_tokens)
            answer = reply["choices"][0]["message"]["content"]
            got = scores(answer, item.golds)
            rows[-1][layout] = {**got, "answer": answer}
            totals[layout]["contains"] += got["contains"]
            totals[layout]["f1"] += got["f1"]
        if i % 25 == 0:
            print(f"  {i}/{len(items)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    svc.close()
    if args.dump:
        Path(args.dump).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"\n{len(items)} questions from the {'last' if args.held_out else 'first'} {args.articles} articles, "
          f"gold paragraph only, greedy, {args.max_tokens} tokens\n")
    print("| layout | contains gold | token F1 |\n|---|---:|---:|")
    for layout, t in totals.items():
        print(f"| {layout} | {t['contains'] / len(items):.3f} | {t['f1'] / len(items):.3f} |")
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
