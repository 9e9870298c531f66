"""Answer quality through the app's own backend on SQuAD v1.1 dev, with a real model, greedy.

    .venv/bin/python benchmarks/answers.py [--articles 5] [--per-article 40] [--offset 0] [--max-tokens 48] [--n-ctx 2048]
        [--modes article,oracle,...] [--date auto|on|off] [--tuning] [--dump FILE]

Held-out articles (the last ``--articles`` of the dev set, which no tuning here looked at) are each
uploaded whole and cached (an article longer than ``n_ctx`` has each chunk's RAG prefix cached, as the
Cache button does). Every question is asked in a fresh session these ways, side by side in one run:

* ``article``: the whole article selected, as the app answers it (CAG when it fits ``n_ctx``, else RAG
  with the best chunk as the cached prefix, ``rag_prefix_chunks``);
* ``turn``: the same with ``rag_prefix_chunks=0``, the layout before chunk caching: the top-k chunks
  in the user turn, prefilled on every question;
* ``oracle``: only the gold paragraph, uploaded as its own document and cached (CAG);
* ``none``: no document;
* ``plain``: the oracle's own prompt (the app's layout, the paragraph named as uploaded) evaluated whole
  through llama-cpp-python, no cache: what the oracle would answer if caching changed nothing;
* ``direct``: the same loaded model prompted straight through llama-cpp-python with the paragraph and
  the question (no app), the reference the oracle must match.

Scores use SQuAD's normalisation (lower case, no punctuation or articles, folded spaces): exact match,
token F1, and answer-contains-gold (a gold answer's normalised text inside the normalised answer).
It also reports whether a retrieved chunk holds a gold answer (and its rank in the top-k), so a
reader sees whether answers are lost in retrieval or in reading, and the disk bytes of chunk caches
per document token. Prints a Markdown table.

The app runs as it ships: the date line only in questions about time (``turn_datetime`` ``auto``; ``--date on``
puts it in every question, as the app did until 2026-12-01), its time fixed at ``NOW`` so that runs repeat
(``ChatService.clock``); ``plain`` carries the same line. ``--date off`` turns
it off.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squad import OWNER, SQUAD, ask, percentile

from backend.chat import compose, frame
from backend.config import Settings
from backend.documents import DocText
from backend.grounding.tuning import normalize
from backend.inference import Sampling, bundled_path
from backend.services import Services, build_services

DIRECT_SYSTEM = "Answer the question from the context, briefly."
NOW = 1796119200.0  # the date line's time (the app's ``turn_datetime``): 2026-12-01 10:00 UTC, fixed so runs repeat
MODES = ("article", "turn", "oracle", "none", "plain", "direct")


def f1(prediction: str, gold: str) -> float:
    """Token F1 between normalised texts (evaluate-v1.1.py)."""
    p, g = normalize(prediction).split(), normalize(gold).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def scores(prediction: str, golds: tuple[str, ...]) -> dict:
    """Exact match, F1 and contains-gold against the best of the gold answers."""
    norm = normalize(prediction)
    return {"em": max(float(norm == normalize(g)) for g in golds),
            "f1": max(f1(prediction, g) for g in golds),
            "contains": max(float(normalize(g) in norm) for g in golds if normalize(g))}


@dataclass
class Item:
    """One question with its gold answers, its paragraph and its article."""

    question: str
    golds: tuple[str, ...]
    paragraph: str
    title: str
    results: dict = field(default_factory=dict)
    rank: int | None = None  # of the first top-k chunk holding a gold answer


def pick(n_articles: int, per_article: int, tuning: bool = False,
         offset: int = 0) -> tuple[list[tuple[str, str]], list[Item]]:
    """The last ``n_articles`` articles (the first ones with ``tuning``, so that choices made by looking
    at results never touch the held-out ones) and ``per_article`` questions from each, evenly spaced,
    starting ``offset`` questions in (offsets below the spacing give disjoint samples)."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    data = data[:n_articles] if tuning else data[-n_articles:]
    articles, items = [], []
    for art in data:
        title = art["title"].replace("_", " ")
        articles.append((title, title + "\n\n" + "\n\n".join(p["context"] for p in art["paragraphs"])))
        qas = [(qa, p["context"]) for p in art["paragraphs"] for qa in p["qas"]]
        step = max(1, len(qas) // per_article)
        for qa, context in qas[offset::step][:per_article]:
            golds = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
            items.append(Item(qa["question"], golds, context, title))
    return articles, items


def direct_messages(paragraph: str, question: str) -> list[dict[str, str]]:
    """The reference prompt: a short instruction, then the paragraph and the question in the user turn."""
    return [{"role": "system", "content": DIRECT_SYSTEM},
            {"role": "user", "content": f"Context: {paragraph}\n\nQuestion: {question}"}]


def oracle_messages(instructions: str, paragraph: str, name: str, question: str) -> list[dict[str, str]]:
    """The prompt the app builds for the oracle: ``instructions`` and the paragraph as document ``name``."""
    return frame(instructions, [DocText("p", name, paragraph)]).messages([{"role": "user", "content": question}])


def ask_plain(svc: Services, messages: list[dict[str, str]], max_tokens: int) -> tuple[str, float]:
    """The loaded model prompted with ``messages`` through llama-cpp-python's chat completion, greedy:
    answer, TTFT in seconds. It evaluates the whole prompt every time (``Engine.plain_llama`` empties
    the context around it)."""
    with svc.engine.plain_llama() as llm:
        start, first, pieces = time.perf_counter(), None, []
        for chunk in llm.create_chat_completion(messages, temperature=0.0, max_tokens=max_tokens, stream=True):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                first = first or time.perf_counter()
                pieces.append(piece)
    return "".join(pieces), (first or time.perf_counter()) - start


def gold_rank(texts: list[str], golds: tuple[str, ...]) -> int | None:
    """1-based rank of the first retrieved chunk text holding a gold answer, or None."""
    wanted = [normalize(g) for g in golds if normalize(g)]
    for rank, chunk in enumerate(texts, 1):
        text = normalize(chunk)
        if any(w in text for w in wanted):
            return rank
    return None


def run(args) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="kvc-answers-"))
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "none", model_path=Path(args.model),
                        auto_download=False, n_ctx=args.n_ctx, max_tokens=args.max_tokens, turn_datetime=args.date,
                        temperature=0.0, kv_disk_budget_mb=16384, rag_prefix_chunks=args.prefix_chunks,
                        **({"system_prompt": args.system_prompt} if args.system_prompt else {}))
    svc = build_services(settings)
    if not svc.engine.loaded:
        raise SystemExit(svc.model_error)
    svc.chat.clock = lambda: NOW
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    articles, items = pick(args.articles, args.per_article, args.tuning, args.offset)
    folder = data_dir / "docs"
    folder.mkdir()
    article_ids, paragraph_ids = {}, {}
    paragraph_names = {}  # paragraph -> the name its oracle document is uploaded under
    for item in items:
        paragraph_names.setdefault(item.paragraph, f"paragraph-{len(paragraph_names)}.txt")
    for title, text in articles:
        path = folder / f"{title}.txt"
        path.write_text(text, encoding="utf-8")
        row, _ = svc.documents.upload(OWNER, path)
        article_ids[title] = (row.doc_id, row.tokens)
    needs_article = {"article", "turn"} & set(args.modes)
    primed = [svc.primer.cache_documents(OWNER, [doc_id]) for doc_id, _ in article_ids.values()] if needs_article else []
    for item in items:
        if "oracle" in args.modes and item.paragraph not in paragraph_ids:
            path = folder / paragraph_names[item.paragraph]
            path.write_text(item.paragraph, encoding="utf-8")
            row, _ = svc.documents.upload(OWNER, path)
            svc.primer.cache_documents(OWNER, [row.doc_id])
            paragraph_ids[item.paragraph] = row.doc_id
    doc_tokens = sum(n for _, n in article_ids.values())
    print(f"model {Path(args.model).name}, n_ctx {svc.engine.n_ctx}, greedy, max_tokens {args.max_tokens}, "
          f"rag_prefix_chunks {settings.rag_prefix_chunks}, top-k {settings.retrieval_top_k}; "
          f"{len(items)} questions from {len(articles)} {'tuning' if args.tuning else 'held-out'} articles "
          f"({', '.join(f'{t} {n:,} tokens' for t, (_, n) in article_ids.items())})", flush=True)
    chunked = [p for p in primed if p["tier"] == "chunks"]
    if chunked:
        print(f"Chunk caches: {sum(p['chunks'] for p in chunked)} chunks of {len(chunked)} articles computed in "
              f"{sum(p['seconds'] for p in chunked):.0f} s, {sum(p['bytes'] for p in chunked) / 2**20:,.0f} MiB on "
              f"disk = {sum(p['bytes'] for p in chunked) / doc_tokens:,.0f} bytes per document token", flush=True)
    started = time.perf_counter()
    for i, item in enumerate(items, 1):
        doc_id = article_ids[item.title][0]
        ranked = svc.documents.search(OWNER, item.question, [doc_id], settings.retrieval_top_k)
        item.rank = gold_rank([h.text for h in ranked], item.golds)
        for mode, ids in (("article", [doc_id]), ("turn", [doc_id]), ("oracle", [paragraph_ids.get(item.paragraph)]),
                          ("none", [])):
            if mode not in args.modes:
                continue
            svc.settings.rag_prefix_chunks = 0 if mode == "turn" else args.prefix_chunks
            done = ask(svc, item.question, ids, sampling)
            answer, metrics = done["answer"], done["metrics"]
            item.results[mode] = {**scores(answer, item.golds), "ttft": metrics["ttft_s"],
                                  "prompt": metrics["prompt_tokens"], "reused": metrics["reused_tokens"],
                                  "prefill": metrics["prefill_tokens"], "tier": metrics["cache_tier"],
                                  "app_mode": metrics["mode"], "retrieved": metrics.get("retrieved_tokens", 0),
                                  "answer": answer}
        for mode in ("plain", "direct"):
            if mode in args.modes:
                messages = (oracle_messages(settings.system_prompt, item.paragraph, paragraph_names[item.paragraph],
                                            compose(settings, None, OWNER, "", item.question, now=NOW).sent)
                            if mode == "plain" else direct_messages(item.paragraph, item.question))
                answer, ttft = ask_plain(svc, messages, args.max_tokens)
                item.results[mode] = {**scores(answer, item.golds), "ttft": ttft, "answer": answer}
        if i % 20 == 0:
            print(f"  {i}/{len(items)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    svc.close()
    report(items, args)


LABELS = {"article": "whole article, as the app answers it", "turn": "whole article, chunks in the user turn (before)",
          "oracle": "gold paragraph cached (oracle, CAG)", "none": "no document",
          "plain": "the oracle's prompt, llama-cpp-python directly",
          "direct": "gold paragraph, llama-cpp-python directly"}


def report(items: list[Item], args) -> None:
    """Print the table, the retrieval breakdown and the ratios the issues set goals on."""
    n = len(items)
    print("\n| mode | contains gold | exact match | token F1 | median TTFT s | p95 TTFT s | median prompt tokens "
          "| median prefill tokens | median reused tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for mode, label in LABELS.items():
        if mode not in args.modes:
            continue
        rs = [it.results[mode] for it in items]
        mean = {k: sum(r[k] for r in rs) / n for k in ("contains", "em", "f1")}
        ttfts = [r["ttft"] for r in rs]
        summary[mode] = {**mean, "ttft": statistics.median(ttfts)}
        counts = [f"{statistics.median(r[k] for r in rs):,.0f}" if k in rs[0] else "" for k in
                  ("prompt", "prefill", "reused")]
        print(f"| {label} | {mean['contains']:.3f} | {mean['em']:.3f} | {mean['f1']:.3f} | "
              f"{statistics.median(ttfts):.3f} | {percentile(ttfts, 0.95):.3f} | {' | '.join(counts)} |")
    ranks = collections.Counter(it.rank for it in items)
    print(f"\nRetrieval (top-k of the article): a chunk holds a gold answer for {n - ranks.get(None, 0)}/{n} questions "
          f"(rank 1: {ranks.get(1, 0)}, 2-3: {ranks.get(2, 0) + ranks.get(3, 0)}, "
          f"4+: {sum(v for k, v in ranks.items() if k is not None and k >= 4)}).")
    for mode in ("article", "turn"):
        if mode in args.modes:
            rs = [(it.rank, it.results[mode]) for it in items]
            by = {name: [r["contains"] for rank, r in rs if test(rank)] for name, test in
                  (("rank 1", lambda k: k == 1), ("rank 2+", lambda k: k is not None and k > 1),
                   ("not retrieved", lambda k: k is None))}
            tiers = collections.Counter(r["tier"] for _, r in rs)
            print(f"{LABELS[mode]}: app modes {dict(collections.Counter(r['app_mode'] for _, r in rs))}, "
                  f"prefix tiers {dict(tiers)}; contains-gold " +
                  ", ".join(f"{k} {sum(v) / len(v):.3f} ({len(v)})" for k, v in by.items() if v) + ".")
    if "oracle" in summary:
        oracle = summary["oracle"]
        if "plain" in summary:
            same = sum(it.results["oracle"]["answer"].strip() == it.results["plain"]["answer"].strip() for it in items)
            print(f"The oracle (cached, through the app) and its prompt evaluated whole give identical answers to "
                  f"{same}/{n} questions.")
        for mode in ("article", "turn", "plain", "direct"):
            if mode in summary and oracle["contains"]:
                print(f"{LABELS[mode]} / oracle: contains-gold {summary[mode]['contains'] / oracle['contains']:.2f}x, "
                      f"median TTFT {summary[mode]['ttft'] / oracle['ttft']:.2f}x.")
    dump(items, args)


def dump(items: list[Item], args) -> None:
    if args.dump:
        Path(args.dump).write_text(json.dumps([vars(it) for it in items], indent=1), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(bundled_path(ROOT / "models")))
    parser.add_argument("--articles", type=int, default=5)
    parser.add_argument("--per-article", type=int, default=40)
    parser.add_argument("--offset", type=int, default=0,
                        help="start each article's evenly spaced questions this many in (another sample)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--system-prompt", help="instructions instead of the configured ones")
    parser.add_argument("--date", choices=("auto", "on", "off"), default=Settings().turn_datetime,
                        help="turn_datetime: the date line in questions about time only (auto, the app's default), "
                             "in every question, or in none")
    parser.add_argument("--prefix-chunks", type=int, default=Settings().rag_prefix_chunks,
                        help="rag_prefix_chunks for the article mode (default: the app's)")
    parser.add_argument("--modes", type=lambda v: v.split(","), default=list(MODES),
                        help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--tuning", action="store_true",
                        help="use the first articles instead of the held-out last ones (for trying settings)")
    parser.add_argument("--dump", help="write every question's answers and scores to this JSON file")
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
