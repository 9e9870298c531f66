"""Answers a reader can check, measured as a user meets them: right, cited, and honest.

    .venv/bin/python benchmarks/citations.py [--articles 5] [--per-article 40] [--unanswerable 20]
        [--doc-tokens 5000] [--modes auto,cag,rag,oracle] [--tuning] [--dump FILE] [--rescore FILE]

Through the app's own backend (``ChatService``), the bundled SmolLM2, greedy, the default ``n_ctx``, the
date line as shipped (``turn_datetime`` auto). Each held-out SQuAD v1.1 article (the last ``--articles``;
``--tuning`` takes the first ones instead) is cut to its first paragraphs up to ``--doc-tokens`` tokens
(the 4-6k-token documents the issue tried), uploaded as a text file and cached with the Cache button's
code (``Primer.cache_documents``: whole, or each chunk where auto retrieves). Every question is asked in a
fresh session in each mode:

* ``auto``: as the app answers by default (``mode_reason`` says why);
* ``cag`` / ``rag``: forced whole-document reading / forced retrieval (best chunk as the cached prefix);
* ``oracle``: only the gold paragraph, uploaded and cached as its own document (answerable questions only).

Answerable questions are the article's own, evenly spaced. Unanswerable ones are built (never taken
from a set used for tuning): half are another article's questions asked of this one (``other``), half
are this article's questions with a named entity swapped for one the article never names (``absent``).

Scores:
* **contains gold**: SQuAD-normalised gold answer inside the normalised answer;
* **citation precision**: of the right answers, the share whose first source's quote holds a gold answer;
* **sourced**: of the answers not marked as abstentions, the share with at least one source;
* **false abstention**: answerable questions whose answer is marked ``not_found`` (the verdict, which
  includes the model saying so itself);
* **abstention**: unanswerable questions whose answer is marked ``not_found``;
* **attribution ms**: the time from the last token to the sources (``attribution_s``), median and p95; and
  the same against each whole article (7-10k tokens), the worst case the table's documents are cut from.

``--rescore FILE`` recomputes every answer's attribution from a ``--dump`` file with the current code,
without the model (for choosing thresholds on the tuning articles; its times are the code's alone, the
stored pages already read).

``--set squad2`` asks SQuAD 2.0's adversarial tuning articles instead (``build_squad2``: human-written unanswerable
questions beside answerable ones) and prints the verdict tables (``verdict_fit``) for the first ``verdict_fit.FIT_ARTICLES``
articles and for the others; ``--rescore DUMP --fit`` first fits the verdict model
(``backend/grounding/verdict.py``) on those first articles and prints its block. A SQuAD v1.1 run prints the verdict
table of each mode too.

    .venv/bin/python benchmarks/citations.py --set squad2 --articles 8 --per-article 25 --unanswerable 25 \
        --doc-tokens 6000 --modes auto,cag --dump sq2.json          # ~25 min: the model's answers
    .venv/bin/python benchmarks/citations.py --rescore sq2.json --fit  # the fit and its tables, no model
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import verdict_fit
from squad import OWNER, SQUAD, ask, percentile

from backend.config import Settings
from backend.documents import Page
from backend.grounding import Calibration, PassageIndex, attribute, calibration_for, passages_of, read_calibration
from backend.grounding.tuning import SHARED_TUNING, contains_gold, cut_article, tuning_questions
from backend.inference import Sampling, bundled_path, model_identity
from backend.services import build_services

MODES = ("auto", "cag", "rag", "oracle")
_ENTITY = re.compile(r"(?<=\s)([A-Z][^\W\d_]+(?: (?:of |the )?[A-Z][^\W\d_]+)*)\b")


@dataclass
class Item:
    """One question: its gold answers (empty when unanswerable), kind, paragraph and document."""

    question: str
    golds: tuple[str, ...]
    kind: str  # answerable, other, absent
    paragraph: str
    title: str
    results: dict = field(default_factory=dict)
    plausible: tuple[str, ...] = ()  # SQuAD 2.0: the answers a reader of an unanswerable question falls for


def entities(question: str) -> list[str]:
    """Capitalised word runs of a question that are not its first word (names, places, titles)."""
    return [m.group(1) for m in _ENTITY.finditer(question)]


def build_items(n_articles: int, per_article: int, unanswerable: int, tuning: bool, doc_tokens: int,
                count_tokens, offset: int = 0) -> tuple[list[tuple[str, str]], list[Item]]:
    """The documents (``(title, text)``, each cut to ``doc_tokens``) and the questions (see module docstring)."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    data = data[:n_articles] if tuning else data[-n_articles:]
    docs, own = [], []
    for art in data:
        title, text, kept = cut_article(art, doc_tokens, count_tokens)
        docs.append((title, text))
        own.append([(qa, p["context"]) for p in kept for qa in p["qas"]])
    items: list[Item] = []
    for i, (title, text) in enumerate(docs):
        qas = own[i]
        step = max(1, len(qas) // per_article)
        for qa, context in qas[offset::step][:per_article]:
            items.append(Item(qa["question"], tuple(dict.fromkeys(a["text"] for a in qa["answers"])), "answerable",
                              context, title))
        lower = text.lower()
        other = own[(i + 1) % len(docs)]
        step = max(1, len(other) // max(1, unanswerable // 2))
        for qa, _ in other[offset::step][: unanswerable // 2]:
            items.append(Item(qa["question"], (), "other", "", title))
        foreign = [e for qa, _ in own[(i + 2) % len(docs)] for e in entities(qa["question"]) if e.lower() not in lower]
        swapped = 0
        for qa, context in qas[offset + 1:]:
            names = [e for e in entities(qa["question"]) if e.lower() in lower]
            if not names or not foreign or swapped >= unanswerable - unanswerable // 2:
                continue
            new = foreign[swapped % len(foreign)]
            question = re.sub(rf"\b{re.escape(names[0])}\b", new, qa["question"], count=1)
            items.append(Item(question, (), "absent", context, title))
            swapped += 1
    return docs, items


def build_squad2(n_articles: int, per_article: int, unanswerable: int, doc_tokens: int, count_tokens,
                 offset: int = 0) -> tuple[list[tuple[str, str]], list[Item]]:
    """SQuAD 2.0's adversarial set (``SHARED_TUNING``) as the calibration asks it (``backend.grounding.tuning``): each
    article cut to ``doc_tokens``; per article ``per_article`` answerable and ``unanswerable`` human-written
    unanswerable questions (kind ``adversarial``, their ``plausible_answers`` kept apart), evenly spaced."""
    docs, questions = tuning_questions(SHARED_TUNING, n_articles, per_article, unanswerable, doc_tokens, count_tokens, offset)
    return docs, [Item(q.question, q.golds, q.kind, q.paragraph, q.title, plausible=q.plausible) for q in questions]


def run(args) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="kvc-citations-"))
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "none", model_path=Path(args.model),
                        auto_download=False, temperature=0.0, max_tokens=args.max_tokens, kv_disk_budget_mb=16384)
    svc = build_services(settings)
    if not svc.engine.loaded:
        raise SystemExit(svc.model_error)
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    if args.set == "squad2":
        docs, items = build_squad2(args.articles, args.per_article, args.unanswerable, args.doc_tokens,
                                   svc.engine.count_tokens, args.offset)
    else:
        docs, items = build_items(args.articles, args.per_article, args.unanswerable, args.tuning, args.doc_tokens,
                                  svc.engine.count_tokens, args.offset)
    folder = data_dir / "docs"
    folder.mkdir()
    doc_ids, paragraph_ids = {}, {}
    for title, text in docs:
        path = folder / f"{title}.txt"
        path.write_text(text, encoding="utf-8")
        row, _ = svc.documents.upload(OWNER, path)
        primed = svc.primer.cache_documents(OWNER, [row.doc_id])
        doc_ids[title] = row.doc_id
        print(f"{title}: {row.tokens:,} tokens, cached as {primed['tier']} ({primed.get('reason', '')})", flush=True)
    if "cag" in args.modes:  # the whole-document prefixes too, so forced CAG restores rather than prefills
        for doc_id in doc_ids.values():
            svc.primer._prime(OWNER, svc.primer._doc_prefix(OWNER, [doc_id])[0], [doc_id])
    if "oracle" in args.modes:
        for item in items:
            if item.kind == "answerable" and item.paragraph not in paragraph_ids:
                path = folder / f"paragraph-{len(paragraph_ids)}.txt"
                path.write_text(item.paragraph, encoding="utf-8")
                row, _ = svc.documents.upload(OWNER, path)
                svc.primer.cache_documents(OWNER, [row.doc_id])
                paragraph_ids[item.paragraph] = row.doc_id
    print(f"model {Path(args.model).name}, n_ctx {svc.engine.n_ctx}, greedy, max_tokens {args.max_tokens}, "
          f"turn_datetime {settings.turn_datetime}, CAG limit {svc.chat.planner.cag_limit.describe()}; "
          f"{sum(i.kind == 'answerable' for i in items)} answerable and {sum(i.kind != 'answerable' for i in items)} "
          f"unanswerable questions, {len(docs)} {'tuning' if args.tuning else 'held-out'} documents", flush=True)
    started = time.perf_counter()
    for n, item in enumerate(items, 1):
        for mode in args.modes:
            if mode == "oracle":
                if item.kind != "answerable":
                    continue
                item.results[mode] = ask(svc, item.question, [paragraph_ids[item.paragraph]], sampling, "cag")
            else:
                item.results[mode] = ask(svc, item.question, [doc_ids[item.title]], sampling, mode)
        if n % 20 == 0:
            print(f"  {n}/{len(items)} questions, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    svc.close()
    dumped = {"docs": dict(docs), "items": [vars(i) for i in items], "args": vars(args)}
    if args.dump:
        Path(args.dump).write_text(json.dumps(dumped, indent=1), encoding="utf-8")
    return dumped


def dump_calibration(dumped: dict, path: str | None) -> Calibration:
    """The calibration a rescore judges with: ``path``, else the one shipped for the dump's model (the bundled
    SmolLM2's when that model file is not here), every mark allowed (``verdict_fit.every_mark``)."""
    if path:
        return verdict_fit.every_mark(read_calibration(Path(path)))
    model = Path(dumped["args"].get("model", ""))
    found = calibration_for(model_identity(model)) if model.is_file() else None
    return verdict_fit.every_mark(found or calibration_for(model_identity(bundled_path(ROOT / "models"))))


def rescore(dumped: dict, similarity=None, calibration: Calibration | None = None) -> None:
    """Recompute each answer's attribution with the current code from the dumped texts (no LLM; ``similarity``:
    MiniLM's, as ``Grounder.similarity``; ``calibration``: the verdict's parameters, ``dump_calibration``). Its
    ``attribution_s`` becomes this code's time: a document's passage index is built on its first question and
    kept, as ``Grounder`` does (the stored pages' read is not in it)."""
    indexes: dict[str, PassageIndex] = {}

    def index(doc_id: str, name: str, text: str) -> PassageIndex:
        if doc_id not in indexes:
            indexes[doc_id] = PassageIndex.build(passages_of(doc_id, name, [Page(1, text)]))
        return indexes[doc_id]

    for item in dumped["items"]:
        for mode, r in item["results"].items():
            text = item["paragraph"] if mode == "oracle" else dumped["docs"][item["title"]]
            doc_id = f"{mode == 'oracle'}:{item['title']}:{hash(text)}"
            name = "paragraph.txt" if mode == "oracle" else f"{item['title']}.txt"  # as uploaded
            started = time.perf_counter()
            found = attribute(item["question"], r["answer"], [index(doc_id, name, text)], similarity,
                              calibration).to_dict()
            r["metrics"]["attribution_s"] = time.perf_counter() - started
            r.update(sources=found["sources"], grounding=found["grounding"], closest=found["closest"],
                     grounding_note=found["note"], signals=found["signals"], confidence=found["confidence"],
                     abstained=found["abstained"])


def whole_article_latency(dumped: dict) -> None:
    """Attribution time of every answerable question's auto answer against its whole article (7-10k tokens,
    more than the 6k the issue sets its goal for), the index built cold once per article: print p50 and p95."""
    data = {a["title"].replace("_", " "): "\n\n".join(p["context"] for p in a["paragraphs"])
            for a in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]}
    built, times = {}, []
    for item in dumped["items"]:
        r = item["results"].get("auto") or next(iter(item["results"].values()))
        started = time.perf_counter()
        if item["title"] not in built:
            built[item["title"]] = PassageIndex.build(passages_of("a", f"{item['title']}.txt",
                                                                  [Page(1, data[item["title"]])]))
        attribute(item["question"], r["answer"], [built[item["title"]]])
        times.append(1000 * (time.perf_counter() - started))
    print(f"\nAttribution against the whole articles ({len(built)}, passages: "
          f"{', '.join(str(len(ix.passages)) for ix in built.values())}): p50 {statistics.median(times):.1f} ms, "
          f"p95 {percentile(times, 0.95):.1f} ms, max {max(times):.1f} ms (the first question of each article "
          f"builds its index)")


def report(dumped: dict) -> None:
    """Print the table and the ratios the issue sets goals on."""
    items, modes = dumped["items"], dumped["args"]["modes"]
    print("\n| mode | answerable | contains gold | citation precision | sourced | false abstention | unanswerable "
          "| abstention | attribution ms p50 / p95 | TTFT p50 s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for mode in modes:
        rs = [(it, it["results"][mode]) for it in items if mode in it["results"]]
        ans = [(it, r) for it, r in rs if it["kind"] == "answerable"]
        una = [(it, r) for it, r in rs if it["kind"] != "answerable"]
        right = [(it, r) for it, r in ans if contains_gold(r["answer"], it["golds"])]
        cited = [r for it, r in right if r["sources"] and contains_gold(r["sources"][0]["quote"], it["golds"])]
        kept = [r for _, r in rs if r["grounding"] != "not_found"]
        ms = [1000 * r["metrics"]["attribution_s"] for _, r in rs]
        row = {"contains": len(right) / len(ans) if ans else 0.0,
               "precision": len(cited) / len(right) if right else 0.0,
               "sourced": sum(bool(r["sources"]) for r in kept) / len(kept) if kept else 0.0,
               "false": sum(r["grounding"] == "not_found" for _, r in ans) / len(ans) if ans else 0.0,
               "abstention": sum(r["grounding"] == "not_found" for _, r in una) / len(una) if una else None}
        summary[mode] = row
        abst = f"{row['abstention']:.3f}" if row["abstention"] is not None else "—"
        print(f"| {mode} | {len(ans)} | {row['contains']:.3f} | {row['precision']:.3f} ({len(cited)}/{len(right)}) | "
              f"{row['sourced']:.3f} | {row['false']:.3f} | {len(una)} | {abst} | "
              f"{statistics.median(ms):.1f} / {percentile(ms, 0.95):.1f} | "
              f"{statistics.median(r['metrics']['ttft_s'] for _, r in rs):.3f} |")
    for mode in modes:
        reasons = {r["metrics"]["mode"] + ": " + r["metrics"]["mode_reason"].split(",")[0]
                   for it in items for m, r in it["results"].items() if m == mode}
        if mode == "auto":
            print(f"\nauto chose: {sorted(reasons)}")
    if "oracle" in summary and summary["oracle"]["contains"]:
        for mode in ("auto", "cag", "rag"):
            if mode in summary:
                print(f"{mode} / oracle contains-gold: {summary[mode]['contains'] / summary['oracle']['contains']:.2f}x")
    kinds = sorted({it["kind"] for it in items if it["kind"] != "answerable"})
    for mode in modes:
        parts = []
        for kind in kinds:
            rs = [it["results"][mode] for it in items if it["kind"] == kind and mode in it["results"]]
            if rs:
                parts.append(f"{kind} {sum(r['grounding'] == 'not_found' for r in rs) / len(rs):.3f} ({len(rs)})")
        verdicts = {}
        for it in items:
            r = it["results"].get(mode)
            if r and it["kind"] == "answerable":
                verdicts[r["grounding"]] = verdicts.get(r["grounding"], 0) + 1
        if parts:
            print(f"{mode}: abstention by kind: {', '.join(parts)}; answerable verdicts {verdicts}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(bundled_path(ROOT / "models")))
    parser.add_argument("--articles", type=int, default=5)
    parser.add_argument("--per-article", type=int, default=40)
    parser.add_argument("--unanswerable", type=int, default=20, help="unanswerable questions per article")
    parser.add_argument("--doc-tokens", type=int, default=5000, help="cut each article to this many tokens")
    parser.add_argument("--offset", type=int, default=0, help="start each article's questions this many in")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--modes", type=lambda v: v.split(","), default=list(MODES))
    parser.add_argument("--tuning", action="store_true", help="the first articles instead of the held-out last ones")
    parser.add_argument("--set", choices=["squad1", "squad2"], default="squad1",
                        help="squad1: SQuAD v1.1 with constructed unanswerable questions; squad2: the adversarial "
                             "SQuAD 2.0 tuning articles (human-written unanswerable questions)")
    parser.add_argument("--dump", help="write every answer to this JSON file")
    parser.add_argument("--rescore", help="recompute attributions from this dump (no model) and report")
    parser.add_argument("--fit", action="store_true", help="with --rescore of a squad2 dump: fit the verdict model "
                        f"on the first {verdict_fit.FIT_ARTICLES} articles, report it on the others (verdict_fit.py)")
    parser.add_argument("--calibration", help="with --rescore: judge with this calibration JSON (default: the one "
                        "shipped for the dump's model)")
    parser.add_argument("--only", type=lambda v: v.split(","), help="with --rescore: report only these articles "
                        "(titles, comma-separated), e.g. those no calibration was fitted on")
    parser.add_argument("--unnamed", action="store_true", help="only the model-independent rule: how often the "
                        "question names what the document never does, on every SQuAD 2.0 tuning question (no model)")
    args = parser.parse_args()
    if args.unnamed:
        verdict_fit.unnamed_table(json.loads(SHARED_TUNING.read_text(encoding="utf-8"))["data"])
        return 0
    if args.rescore:
        dumped = json.loads(Path(args.rescore).read_text(encoding="utf-8"))
        if args.only:
            dumped["items"] = [it for it in dumped["items"] if it["title"] in args.only]
        rescore(dumped, similarity(), dump_calibration(dumped, args.calibration))
    else:
        dumped = run(args)
    if dumped["args"].get("set") == "squad2":
        verdict_fit.squad2_report(dumped, args.fit)
        return 0
    report(dumped)
    whole_article_latency(dumped)
    for mode in dumped["args"]["modes"]:  # the verdict as a user meets it (unanswerable: the constructed ones)
        if mode != "oracle":
            verdict_fit.table(dumped, mode, None, "SQuAD v1.1 articles" + (" (tuning)" if dumped["args"]["tuning"]
                                                                           else " (held out)"))
    return 0


def similarity():
    """MiniLM's cosine of a question and a sentence, as the app measures it (``Grounder.similarity``)."""
    from backend.documents import Embedder
    from backend.grounding.grounder import cosine

    embedder = Embedder("all-MiniLM-L6-v2")
    return lambda q, s: cosine(embedder, q, s)


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
