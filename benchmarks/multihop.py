"""Multi-hop retrieval on HotpotQA (distractor setting): are both gold paragraphs in the top 5?

Usage::

    python benchmarks/multihop.py [--set heldout|tuning] [--layout library|document] [--mmr 0.5,0.7,0.9] [--grid]
        [--questions N]

``--layout library`` (the default): every distinct paragraph of the set's 100 questions (ten per question: two
gold, eight distractors chosen by HotpotQA to resemble them) is uploaded as its own text document (its title,
then its sentences) through the app's pipeline, into one library of about 1,000 documents; each question then
searches the whole library. ``--layout document``: each question's ten paragraphs are one Markdown document, each
paragraph a section headed by its title, and the question searches that document only (links are then the
document's own section headings). A question counts at k when both of its gold paragraphs are among the top k
chunks. Methods, side by side on the same index and questions:

* ``hybrid``: ``search_documents`` as the app ships it (BM25 and vector fused by score, ``backend.documents.search``,
  then re-ranked by the documents the question and the two best chunks name, ``backend.documents.links``);
* ``hybrid, no links``: the fused candidates alone, as the app ranked them before ``links``;
* ``vector`` and ``fts``: one method alone;
* ``rrf``: reciprocal-rank fusion (k=60) of the two lists (Cormack et al., 2009);
* ``hybrid + MMR l``: the app's fused candidates re-ordered by maximal marginal relevance (Carbonell &
  Goldstein, 1998): each pick maximises ``l * relevance - (1 - l) * max cosine to the chunks already picked``,
  so the top 5 holds more than one side of a two-sided question;
* ``links t / w / n`` (``--grid``): the fused candidates re-ranked by ``links.linked`` with question weight t,
  link weight w and n lead chunks (the app ships 0.5 / 0.6 / 2, chosen on the tuning set this way).

Data: benchmarks/data/hotpotqa (README there). Choices are made on ``--set tuning``; the README reports
``heldout``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from squad import OWNER, services

from backend.documents.links import linked
from backend.documents.search import FUSION_DEPTH, fused, ranked

DATA = Path(__file__).resolve().parent / "data" / "hotpotqa"
GRID_TITLE, GRID_LINK, GRID_LEAD = (0.0, 0.2, 0.5, 1.0), (0.0, 0.3, 0.6, 1.0), (1, 2)  # --grid: links.linked's settings


def load(name: str) -> list[dict]:
    """The questions of ``DATA/<name>.jsonl``."""
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def file_name(title: str) -> str:
    """A file name for a paragraph title (its words, no path characters)."""
    return re.sub(r"[^\w .,()'-]+", "_", title)[:120] + ".txt"


def rrf(lists: list[list[dict]], k: int, depth: int = 60) -> list[tuple[str, int]]:
    """Reciprocal-rank fusion of ranked row lists: keys ``(doc_id, idx)``, best first."""
    scores: dict[tuple[str, int], float] = {}
    for rows in lists:
        for rank, r in enumerate(rows, 1):
            key = (r["doc_id"], r["idx"])
            scores[key] = scores.get(key, 0.0) + 1.0 / (depth + rank)
    return sorted(scores, key=scores.__getitem__, reverse=True)[:k]


def mmr(relevance: list[float], vectors: np.ndarray, lam: float, k: int) -> list[int]:
    """Maximal marginal relevance (Carbonell & Goldstein, 1998): pick, one at a time, the candidate that
    maximises ``lam * relevance - (1 - lam) * (its highest cosine to those already picked)``.

    Args:
        relevance: n scores, higher is better (min-max normalised here, so the two terms share a scale).
        vectors: float32, shape (n, dim), L2-normalised.
        lam: 1.0 keeps the relevance order; lower values trade relevance for diversity.
        k: picks wanted.

    Returns:
        Up to ``k`` candidate positions, in pick order.
    """
    n = len(relevance)
    if n == 0:
        return []
    rel = np.asarray(relevance, dtype=np.float32)
    span = float(rel.max() - rel.min())
    rel = (rel - rel.min()) / span if span > 0 else np.ones_like(rel)
    sims = vectors @ vectors.T
    picked: list[int] = []
    closest = np.full(n, -np.inf, dtype=np.float32)  # each candidate's highest cosine to the picks
    for _ in range(min(k, n)):
        score = lam * rel - (1 - lam) * np.where(np.isinf(closest), 0.0, closest)
        score[picked] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        closest = np.maximum(closest, sims[best])
    return picked


def round_robin(first: list[tuple], second: list[tuple], k: int) -> list[tuple]:
    """``first[0]``, then the two lists' keys taken in turn (second first), each once: the best first-round
    chunk stays first, and the second round's best gets the next place."""
    out: list[tuple] = first[:1]
    for pair in zip(second, first[1:]):
        out += [key for key in pair if key not in out]
    out += [key for key in first + second if key not in out]
    return out[:k]


def summed(first: list[dict], second: list[dict], weight: float, k: int) -> list[tuple]:
    """``first[0]`` first, then every key by its first-round plus ``weight`` times its second-round fused score."""
    scores: dict[tuple, float] = {}
    for rows, w in ((first, 1.0), (second, weight)):
        for r in rows:
            key = (r["doc_id"], r["idx"])
            scores[key] = scores.get(key, 0.0) + w * r["_relevance"]
    top = (first[0]["doc_id"], first[0]["idx"])
    return [top] + [key for key in sorted(scores, key=scores.__getitem__, reverse=True) if key != top][: k - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["heldout", "tuning"], default="heldout")
    parser.add_argument("--layout", choices=["library", "document"], default="library",
                        help="one document per paragraph, or one per question with the paragraphs as sections")
    parser.add_argument("--mmr", default="0.5,0.7,0.9", help="MMR lambdas to compare")
    parser.add_argument("--grid", action="store_true",
                        help="also every links setting: question weight x link weight x lead chunks")
    parser.add_argument("--questions", type=int, default=None, help="only the first N questions (a smoke run)")
    args = parser.parse_args()
    questions = load(args.set)[: args.questions]
    svc = services()
    folder = Path(tempfile.mkdtemp(prefix="kvc-multihop-"))
    try:
        titles: dict[str, str] = {}  # title -> doc_id (library layout)
        own: list[str] = []  # each question's document (document layout)
        for i, q in enumerate(questions):
            if args.layout == "document":
                path = folder / f"question-{i:03d}.md"
                path.write_text("".join(f"# {title}\n\n{''.join(sentences)}\n\n" for title, sentences in q["context"]),
                                encoding="utf-8")
                own.append(svc.documents.upload(OWNER, path)[0].doc_id)
                continue
            for title, sentences in q["context"]:
                if title in titles:
                    continue
                path = folder / file_name(title)
                path.write_text(title + "\n\n" + "".join(sentences), encoding="utf-8")
                titles[title] = svc.documents.upload(OWNER, path)[0].doc_id
        by_doc = {v: k for k, v in titles.items()}
        table = svc.store.chunks
        vectors = {(r["doc_id"], r["idx"]): np.asarray(r["vector"], dtype=np.float32)
                   for r in table.search().select(["doc_id", "idx", "vector"]).limit(None).to_list()}
        sections = {(r["doc_id"], r["idx"]): r["section"]
                    for r in table.search().select(["doc_id", "idx", "section"]).limit(None).to_list()}
        lambdas = [float(x) for x in args.mmr.split(",") if x]
        hops = ["hop: round robin", "hop: sum 0.5", "hop: sum 1.0"]
        methods = ["hybrid", "hybrid, no links", "vector", "fts", "rrf", *[f"hybrid + MMR {lam}" for lam in lambdas], *hops]
        grid = [(t, w, n) for t in GRID_TITLE for w in GRID_LINK for n in GRID_LEAD] if args.grid else []
        methods += [f"links {t} / {w} / {n}" for t, w, n in grid]
        hits = {m: {2: 0, 5: 0, 10: 0} for m in methods}
        doc_names = {doc_id: file_name(title) for title, doc_id in titles.items()}
        doc_names.update({doc_id: f"question-{i:03d}.md" for i, doc_id in enumerate(own)})
        for i, q in enumerate(questions):
            scope = [own[i]] if own else []
            where = f"owner = '{OWNER}'" + (f" AND doc_id = '{own[i]}'" if own else "")
            vec = svc.embedder.encode_query(q["question"])
            depth = max(10, FUSION_DEPTH)
            by_vector = ranked(table, "vector", q["question"], vec, where, depth)
            by_text = ranked(table, "fts", q["question"], vec, where, depth)
            candidates = fused(table, q["question"], vec, where, depth)
            keys = {
                "hybrid": [(h.doc_id, h.idx) for h in svc.documents.search(OWNER, q["question"], scope, 10)],
                "hybrid, no links": [(r["doc_id"], r["idx"]) for r in candidates[:10]],
                "vector": [(r["doc_id"], r["idx"]) for r in by_vector],
                "fts": [(r["doc_id"], r["idx"]) for r in by_text],
                "rrf": rrf([by_vector, by_text], 10),
            }
            for lam in lambdas:
                order = mmr([r["_relevance"] for r in candidates],
                            np.stack([vectors[(r["doc_id"], r["idx"])] for r in candidates]), lam, 10)
                keys[f"hybrid + MMR {lam}"] = [(candidates[i]["doc_id"], candidates[i]["idx"]) for i in order]
            hop_query = q["question"] + "\n" + candidates[0]["text"]  # the question with its best paragraph
            second = fused(table, hop_query, svc.embedder.encode_query(hop_query), where, depth)
            first_keys = [(r["doc_id"], r["idx"]) for r in candidates]
            keys["hop: round robin"] = round_robin(first_keys, [(r["doc_id"], r["idx"]) for r in second], 10)
            keys["hop: sum 0.5"] = summed(candidates, second, 0.5, 10)
            keys["hop: sum 1.0"] = summed(candidates, second, 1.0, 10)
            for t, w, n in grid:
                order = linked(candidates, doc_names, q["question"], 10, title_weight=t, link_weight=w, lead=n)
                keys[f"links {t} / {w} / {n}"] = [(r["doc_id"], r["idx"]) for r in order]
            gold = set(q["gold_titles"])
            for m in methods:
                for k in (2, 5, 10):
                    found = ({sections.get(key) for key in keys[m][:k]} if own
                             else {by_doc.get(d) for d, _ in keys[m][:k]})
                    hits[m][k] += gold <= found
        n = len(questions)
        shape = (f"{len(titles):,} paragraphs as documents, one library" if not own else
                 f"one document per question, its {sum(len(q['context']) for q in questions) // len(questions)} "
                 "paragraphs as sections, searched alone")
        print(f"\n{n} HotpotQA questions ({args.set}), {shape}; both gold paragraphs in the top k\n")
        print("| method | both gold @2 | both gold @5 | both gold @10 |\n|---|---:|---:|---:|")
        for m in methods:
            print(f"| {m} | {hits[m][2]} / {n} | {hits[m][5]} / {n} | {hits[m][10]} / {n} |")
    finally:
        svc.close()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
