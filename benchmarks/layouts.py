"""Prompt layouts for a question about one paragraph, compared side by side on SQuAD v1.1 dev, greedy.

    .venv/bin/python benchmarks/layouts.py [--articles 8] [--per-article 25] [--layouts app,direct,...] [--held-out]

Each question is asked with its gold paragraph laid out every way in ``LAYOUTS``, through llama-cpp-python's
chat completion on the bundled SmolLM2 (``Engine.plain_llama``, whole prompt evaluated each time, 48 tokens),
so layouts differ in the prompt alone. ``app`` is the app's own (``system_text`` with the configured
instructions, the bare question as the user turn) and ``direct`` is ``answers.py``'s reference; the others
keep the document in the system message (so it stays a cacheable prefix) but change the instructions or the
framing; the ``doc_user`` ones move the document into the user turn, before the question, as ``direct`` does
(cacheable up to the question when the document opens the first user turn).
The tuning articles (the first of the dev set) are the default, so that choosing a layout never looks at
``answers.py``'s held-out ones. Prints a Markdown table of answer-contains-gold and token F1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from answers import DIRECT_SYSTEM, pick, scores

from backend.chat import document_block, system_text
from backend.config import Settings
from backend.documents import DocText
from backend.inference import bundled_path
from backend.services import build_services

ROOT = Path(__file__).resolve().parent.parent
APP = Settings().system_prompt
SUFFIX = "\n\nAnswer the user's question from the documents above, briefly."


def _doc(paragraph: str, name: str) -> list[DocText]:
    return [DocText("p", name, paragraph)]


def _block(paragraph: str, name: str) -> str:
    return document_block(DocText("p", name, paragraph))


# name -> (system message, user message) for (paragraph, question, document name)
LAYOUTS = {
    "app": lambda p, q, n: (system_text(APP, _doc(p, n)), q),
    "direct": lambda p, q, n: (DIRECT_SYSTEM, f"Context: {p}\n\nQuestion: {q}"),
    "short_instructions": lambda p, q, n: (system_text(DIRECT_SYSTEM, _doc(p, n)), q),
    "short_instructions_context": lambda p, q, n: (f"{DIRECT_SYSTEM}\n\nContext: {p}", q),
    "app_context": lambda p, q, n: (f"{APP}\n\nContext: {p}", q),
    "app_reminder_after_document": lambda p, q, n: (system_text(APP, _doc(p, n)) + SUFFIX, q),
    "doc_user": lambda p, q, n: (APP, f"Context: {p}\n\nQuestion: {q}"),
    # the document opening the first user turn (cacheable up to "Question:"), three framings
    "doc_user_tags": lambda p, q, n: (APP, f"Context:\n\n{_block(p, n)}\n\nQuestion: {q}"),
    "doc_user_heading": lambda p, q, n: (APP, f"Context:\n\n# {n}\n\n{p}\n\nQuestion: {q}"),
    "doc_user_no_cues": lambda p, q, n: (APP, f"The user's documents:\n\n{_block(p, n)}\n\n{q}"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--per-article", type=int, default=25)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--layouts", type=lambda v: v.split(","), default=list(LAYOUTS))
    parser.add_argument("--held-out", action="store_true", help="the last articles instead of the tuning ones")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="kvc-layouts-"))
    svc = build_services(Settings(data_dir=data, models_dir=data / "none", model_path=bundled_path(ROOT / "models"),
                                  auto_download=False, n_ctx=2048, turn_datetime=False))
    if not svc.engine.loaded:
        raise SystemExit(svc.model_error)
    _, items = pick(args.articles, args.per_article, tuning=not args.held_out)
    names: dict[str, str] = {}
    totals = {k: {"contains": 0.0, "f1": 0.0} for k in args.layouts}
    started = time.perf_counter()
    for i, item in enumerate(items, 1):
        name = names.setdefault(item.paragraph, f"paragraph-{len(names)}.txt")
        for layout in args.layouts:
            system, user = LAYOUTS[layout](item.paragraph, item.question, name)
            with svc.engine.plain_llama() as llm:
                reply = llm.create_chat_completion([{"role": "system", "content": system},
                                                    {"role": "user", "content": user}],
                                                   temperature=0.0, max_tokens=args.max_tokens)
            got = scores(reply["choices"][0]["message"]["content"], item.golds)
            totals[layout]["contains"] += got["contains"]
            totals[layout]["f1"] += got["f1"]
        if i % 25 == 0:
            print(f"  {i}/{len(items)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    svc.close()
    print(f"\n{len(items)} questions from the {'last' if args.held_out else 'first'} {args.articles} articles, "
          f"gold paragraph only, greedy, {args.max_tokens} tokens\n")
    print("| layout | contains gold | token F1 |\n|---|---:|---:|")
    for layout, t in totals.items():
        print(f"| {layout} | {t['contains'] / len(items):.3f} | {t['f1'] / len(items):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
