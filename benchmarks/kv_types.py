"""KV cache types side by side for the bundled SmolLM2: bytes per token, restore time, cold prefill speed and
answer quality, each through the app's own backend, in one run.

Usage::

    python benchmarks/kv_types.py [--questions 80] [--doc-tokens 1500] [--n-ctx 2048] [--model FILE]

Rows: ``f16`` (llama.cpp's default, no flash attention), ``f16`` with ``flash_attn``, ``q8_0`` and ``q4_0``
(both need ``flash_attn`` for the V cache). For each, the app's services are built with that
``type_k``/``type_v`` and the RAM tier off (every restore reads the file):

* cold prefill: a ``--doc-tokens`` SQuAD document (tuning articles) cached with the Cache button's code,
  tokens per second of the prefill;
* bytes per token: the saved entry's payload over its prefix tokens;
* restore: ``restore_s`` of a question on that document in a new session (read, checksum, ``set_state``);
* answers: the ``answers.py`` oracle: each question's gold paragraph uploaded and cached as its own document,
  the question asked greedily (48 tokens), contains-gold over ``--questions`` questions of the tuning articles
  (the first of the dev set), the same questions for every row. ``--questions 0`` skips it, for a model with
  random weights (``--model``: e.g. the synthetic ``bench`` model, Qwen3-0.6B's shapes, whose costs are real
  and whose answers are not).

It prints a Markdown table; docs/benchmarks.md quotes it and the default (``type_k``/``type_v`` f16) follows
from it: the smallest type whose answers are not measurably worse and whose prefill costs at most 1.25x f16.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from answers import pick, scores
from squad import OWNER, ask

from backend.config import Settings
from backend.inference import Sampling, bundled_path
from backend.services import build_services

ROOT = Path(__file__).resolve().parent.parent
ROWS = (("f16", False), ("f16", True), ("q8_0", True), ("q4_0", True))
GREEDY = Sampling(max_tokens=48, temperature=0.0)


def document(articles: list[tuple[str, str]], n_tokens: int, count) -> str:
    """The first paragraphs of the first tuning article, up to ``n_tokens`` tokens."""
    paragraphs, text = articles[0][1].split("\n\n"), ""
    for p in paragraphs:
        if count(text + p) > n_tokens:
            break
        text += p + "\n\n"
    return text


def measure(kv_type: str, flash: bool, items: list, articles: list, doc_tokens: int, n_ctx: int, model: Path) -> dict:
    """One row of the table (see the module docstring). The document is cached whole (``cag_max_tokens`` set to
    ``n_ctx``), so its prefill is one prefix of ``doc_tokens``, not the chunks auto would cache for this model."""
    data = Path(tempfile.mkdtemp(prefix=f"kvc-kvtypes-{kv_type}-"))
    svc = build_services(Settings(data_dir=data, models_dir=data / "none", model_path=model,
                                  auto_download=False, n_ctx=n_ctx, type_k=kv_type, type_v=kv_type, flash_attn=flash,
                                  kv_ram_budget_mb=0, turn_datetime=False, max_tokens=48, cag_max_tokens=n_ctx))
    try:
        if not svc.engine.loaded:
            raise SystemExit(svc.model_error)
        long_doc = data / "article.txt"
        long_doc.write_text(document(articles, doc_tokens, lambda t: len(svc.engine.tokenize(t))), encoding="utf-8")
        row, _ = svc.documents.upload(OWNER, long_doc)
        primed = svc.primer.cache_documents(OWNER, [row.doc_id])
        restores = []
        for _ in range(5):
            with svc.engine.lock:  # nothing live in the context: the prefix comes from its file
                svc.engine.clear_context()
            metrics = ask(svc, "What is this document about?", [row.doc_id], GREEDY)["metrics"]
            assert metrics["cache_tier"] == "disk", metrics["cache_tier"]
            restores.append(metrics["restore_s"])
        ids: dict[str, str] = {}
        right = 0
        for item in items:
            if item.paragraph not in ids:
                path = data / f"paragraph-{len(ids)}.txt"
                path.write_text(item.paragraph, encoding="utf-8")
                ids[item.paragraph] = svc.documents.upload(OWNER, path)[0].doc_id
                svc.primer.cache_documents(OWNER, [ids[item.paragraph]])
            right += scores(ask(svc, item.question, [ids[item.paragraph]], GREEDY)["answer"], item.golds)["contains"]
        return {"type": kv_type + (" + flash_attn" if flash else ""), "tokens": primed["tokens"],
                "bytes_per_token": primed["bytes"] / primed["tokens"], "prefill_tok_s": primed["tokens"] / primed["seconds"],
                "restore_ms": 1000 * statistics.median(restores), "answers": right / len(items) if items else None}
    finally:
        svc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=80)
    parser.add_argument("--doc-tokens", type=int, default=1500)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--model", type=Path, default=None, help="a GGUF (default: the bundled SmolLM2)")
    parser.add_argument("--rows", type=int, default=len(ROWS), help="only the first N KV settings (a smoke run)")
    args = parser.parse_args()
    model = args.model or bundled_path(ROOT / "models")
    articles, items = pick(8, max(1, args.questions // 8), tuning=True)
    items = items[: args.questions]
    rows = []
    for kv_type, flash in ROWS[: args.rows]:
        started = time.perf_counter()
        rows.append(measure(kv_type, flash, items, articles, args.doc_tokens, args.n_ctx, model))
        print(f"  {rows[-1]['type']}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    base = rows[0]
    print(f"\n{model.name}, n_ctx {args.n_ctx}, 2 cores; a {base['tokens']:,}-token document cached whole; "
          f"{len(items)} tuning questions (oracle, greedy)\n")
    print("| KV type | bytes per token | vs f16 | restore ms (p50) | cold prefill tok/s | prefill vs f16 | answers |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['type']} | {r['bytes_per_token']:,.0f} | {r['bytes_per_token'] / base['bytes_per_token']:.2f}x | "
              f"{r['restore_ms']:.1f} | {r['prefill_tok_s']:.0f} | {base['prefill_tok_s'] / r['prefill_tok_s']:.2f}x "
              f"slower | {'—' if r['answers'] is None else format(r['answers'], '.3f')} |")
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
