"""Where a model stops reading whole documents well: CAG against RAG on documents of growing length.

    .venv/bin/python benchmarks/modes.py [--model FILE] [--articles 4] [--per-article 20]
        [--lengths 256,512,1024,2048,4096] [--held-out]

For each length L, every tuning SQuAD article (the first ``--articles``; ``--held-out`` takes the last
ones) is cut into consecutive windows of whole paragraphs of about L tokens, each uploaded as a text
document. Each question is asked of the window holding its paragraph, in a fresh session, twice: the
window read whole (CAG, forced) and retrieved from (RAG, forced: the best chunk as the cached prefix).
Greedy, ``max_tokens`` 48, contains-gold as in ``answers.py``. The longest L at which CAG still answers
at least as well as RAG is the model's CAG limit: set ``KVC_CAG_MAX_TOKENS`` to it, or put it in
``backend/chat/modes.py``'s size rule when it stands for a size band.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from answers import scores
from squad import OWNER, SQUAD, ask

from backend.config import Settings
from backend.inference import Sampling, bundled_path
from backend.services import build_services


def windows(paragraphs: list[dict], length: int, count_tokens) -> list[list[dict]]:
    """Consecutive runs of whole paragraphs, each about ``length`` tokens (a longer paragraph stands alone)."""
    out, run, size = [], [], 0
    for p in paragraphs:
        n = count_tokens(p["context"])
        if run and size + n > length:
            out.append(run)
            run, size = [], 0
        run.append(p)
        size += n
    if run:
        out.append(run)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(bundled_path(ROOT / "models")))
    parser.add_argument("--articles", type=int, default=4)
    parser.add_argument("--per-article", type=int, default=20)
    parser.add_argument("--lengths", type=lambda v: [int(x) for x in v.split(",")], default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--held-out", action="store_true")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="kvc-modes-"))
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "none", model_path=Path(args.model),
                        auto_download=False, temperature=0.0, max_tokens=args.max_tokens, kv_disk_budget_mb=16384,
                        n_ctx=max(8192, 2 * max(args.lengths)))
    svc = build_services(settings)
    if not svc.engine.loaded:
        raise SystemExit(svc.model_error)
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    data = data[-args.articles:] if args.held_out else data[:args.articles]
    folder = data_dir / "docs"
    folder.mkdir()
    rows = []
    started = time.perf_counter()
    for length in args.lengths:
        results = {"cag": [], "rag": []}
        tokens = []
        for art in data:
            runs = windows(art["paragraphs"], length, svc.engine.count_tokens)
            qas = [(qa, i) for i, run in enumerate(runs) for p in run for qa in p["qas"]]
            step = max(1, len(qas) // args.per_article)
            ids = {}
            for qa, i in qas[::step][: args.per_article]:
                if i not in ids:
                    path = folder / f"{art['title']}-{length}-{i}.txt"
                    path.write_text("\n\n".join(p["context"] for p in runs[i]), encoding="utf-8")
                    row, _ = svc.documents.upload(OWNER, path)
                    ids[i] = row.doc_id
                    tokens.append(row.tokens)
                golds = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                for mode in ("cag", "rag"):
                    answer = ask(svc, qa["question"], [ids[i]], sampling, mode)["answer"]
                    results[mode].append(scores(answer, golds)["contains"])
        n = len(results["cag"])
        row = {"length": length, "doc_tokens": sorted(tokens)[len(tokens) // 2], "n": n,
               "cag": sum(results["cag"]) / n, "rag": sum(results["rag"]) / n}
        rows.append(row)
        print(f"  L={length}: {row} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    svc.close()
    print(f"\nmodel {Path(args.model).name}, {len(data)} {'held-out' if args.held_out else 'tuning'} articles, "
          f"greedy, max_tokens {args.max_tokens}\n")
    print("| window (tokens) | median document tokens | questions | CAG contains gold | RAG contains gold | CAG - RAG |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['length']:,} | {r['doc_tokens']:,} | {r['n']} | {r['cag']:.3f} | {r['rag']:.3f} | "
              f"{r['cag'] - r['rag']:+.3f} |")
    good = [r["length"] for r in rows if r["cag"] >= r["rag"]]
    limit = max((g for g in good if all(r["cag"] >= r["rag"] for r in rows if r["length"] <= g)), default=None)
    print(f"\nLongest window where CAG answers at least as well as RAG at every length up to it: "
          f"{limit if limit is not None else 'none'} (KVC_CAG_MAX_TOKENS={limit or min(args.lengths)})")
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
