"""Time to first token on a document prefix: cold prefill vs KV state restored from disk vs already live.

Usage::

    python benchmarks/ttft.py [--model PATH | --preset tiny|bench] [--lengths 1024 2048] [--repeats 5]

Each document is the start of Pride and Prejudice cut to the target length in model tokens; the
question is the same 16-token sentence each time. For every length, in one process and one
run, it measures (median of ``--repeats``):

* cold:  empty context, the whole prompt (instructions + document + question) is prefilled;
* disk:  empty context, the prefix state is read from disk, checksummed, restored, and only the
         question is prefilled (what the first question after a restart costs);
* live:  the prefix is already in the context, only the question is prefilled;
* floor: the raw floor: the same state already in memory as a C buffer, handed straight to
         ``llama_state_seq_set_data`` (no file, no checks), then the question;
* read:  the restore floor: ``cat state.kv > /dev/null`` with the file in the page cache,
         against the app's whole restore (read into llama.cpp's buffer, checksum, set).

It prints a Markdown table (the README quotes it) and, with ``--plot PNG``, draws cold, primed,
raw-floor and live TTFT against document length (needs matplotlib: ``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))


from backend.chat import build_prompt, frame
from backend.documents import DocText
from backend.inference import Engine, LoadParams, Sampling, StreamStats
from backend.kvcache import KVCacheStore, ensure_prefix, entry_key, fingerprint

BOOK = ROOT.parent / "shared" / "testdata" / "longdoc" / "pride_and_prejudice_pg1342.txt"
QUESTION = "Which characters meet at the first ball, and what happens between them there?"
ONE_TOKEN = Sampling(max_tokens=1, temperature=0.0)


def first_token_s(engine: Engine, tokens: list[int]) -> float:
    """Seconds from now until the first generated token of ``tokens``."""
    start = time.perf_counter()
    stats = StreamStats()
    for _ in engine.stream(tokens, ONE_TOKEN, stats):
        break
    return (stats.first_token_at or time.perf_counter()) - start


def document_of(engine: Engine, n_tokens: int) -> DocText:
    """The book's opening, cut to ``n_tokens`` model tokens."""
    text = BOOK.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    tokens = engine.tokenize(text[: n_tokens * 8])[:n_tokens]
    return DocText("book", "pride_and_prejudice.txt", engine.llm.detokenize(tokens).decode("utf-8", "ignore"))


def measure(engine: Engine, store: KVCacheStore, length: int, repeats: int) -> dict:
    """Median cold / disk / live TTFT for one document length."""
    prompt = build_prompt(engine, frame("Answer from the document.", [document_of(engine, length)]), [],
                          QUESTION, history_budget_tokens=0, max_tokens=1)
    cold, disk, live, restore, verify, floor, read = [], [], [], [], [], [], []
    for _ in range(repeats):
        engine.clear_context()
        cold.append(first_token_s(engine, prompt.tokens))
    engine.clear_context()
    ensure_prefix(engine, store, prompt.prefix_tokens, ["book"], "bench")  # prefill + save once
    fp = fingerprint(engine)
    key = entry_key(fp, prompt.prefix_tokens, "bench")
    for _ in range(repeats):
        engine.clear_context()
        start = time.perf_counter()
        result = ensure_prefix(engine, store, prompt.prefix_tokens, ["book"], "bench")
        assert result.tier == "disk"
        restore.append(result.restore_s)
        disk.append(time.perf_counter() - start + first_token_s(engine, prompt.tokens))
        engine.prefill(prompt.prefix_tokens)  # cut the context back to the prefix (nothing is evaluated)
        assert engine.context_tokens() == prompt.prefix_tokens
        live.append(first_token_s(engine, prompt.tokens))
        t = time.perf_counter()
        state = store.load(key, fp, prompt.prefix_tokens)  # read + verify only
        verify.append(time.perf_counter() - t)
        in_memory = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)  # anonymous memory, pages touched
        engine.clear_context()
        t = time.perf_counter()
        engine.set_state(in_memory, prompt.prefix_tokens)  # llama_state_seq_set_data on the buffer, nothing checked
        floor.append(time.perf_counter() - t + first_token_s(engine, prompt.tokens))
        del in_memory
        t = time.perf_counter()
        subprocess.run(["cat", str(store.folder / f"{key}.kv")], stdout=subprocess.DEVNULL, check=True)
        read.append(time.perf_counter() - t)
    med = statistics.median
    return {"doc_tokens": length, "prompt_tokens": len(prompt.tokens), "prefix_tokens": len(prompt.prefix_tokens),
            "state_mb": store.entry(key).state_bytes / 2**20, "cold_s": med(cold), "disk_s": med(disk),
            "live_s": med(live), "restore_s": med(restore), "read_verify_s": med(verify), "floor_s": med(floor),
            "cat_s": med(read)}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF to time (default: a synthetic one of --preset)")
    parser.add_argument("--preset", choices=["tiny", "bench"], default="bench")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument("--plot", type=Path, help="write a PNG chart of the results here")
    parser.add_argument("--kv-type", choices=["f16", "q8_0", "q4_0"], default="f16", help="type_k and type_v")
    parser.add_argument("--flash-attn", action="store_true", help="flash_attn (llama.cpp needs it for a q8_0 V cache)")
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        from make_synthetic import write_model

        model = ROOT / "models" / f"synthetic-{args.preset}.gguf"
        if not model.exists():
            print(f"writing {model} ...", file=sys.stderr)
            write_model(model, args.preset)
    engine = Engine()
    engine.load(model, LoadParams(n_ctx=max(args.lengths) + 512, n_threads=args.n_threads, type_k=args.kv_type,
                                  type_v=args.kv_type, flash_attn=args.flash_attn))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, engine.lock:
        store = KVCacheStore(Path(tmp), budget_bytes=1 << 40)
        for length in args.lengths:
            rows.append(measure(engine, store, length, args.repeats))
            print(f"done {length}", file=sys.stderr)
    per_token = [r["state_mb"] * 2**20 / r["prefix_tokens"] for r in rows]
    print(f"\nmodel: {model.name}, n_ctx {engine.n_ctx}, KV {args.kv_type}, flash_attn {args.flash_attn}, "
          f"median of {args.repeats} runs, times in seconds; state {statistics.median(per_token) / 1024:.1f} KB/token; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB\n")
    print("| doc tokens | KV state MB | cold TTFT | primed (disk) TTFT | raw floor TTFT | primed/floor | "
          "cold/primed | live TTFT | restore | read+verify | cat (page cache) | restore/cat |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['doc_tokens']:,} | {r['state_mb']:.1f} | {r['cold_s']:.3f} | {r['disk_s']:.3f} | "
              f"{r['floor_s']:.3f} | {r['disk_s'] / r['floor_s']:.2f}x | {r['cold_s'] / r['disk_s']:.1f}x | "
              f"{r['live_s']:.3f} | {r['restore_s']:.3f} | {r['read_verify_s']:.3f} | {r['cat_s']:.3f} | "
              f"{r['restore_s'] / r['cat_s']:.2f}x |")
    engine.unload()
    if args.plot:
        plot(rows, args.plot, model.name)
    return 0


def plot(rows: list[dict], path: Path, model_name: str) -> None:
    """Draw TTFT (log seconds) against document tokens for each way of getting the prefix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["doc_tokens"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, label, style in (("cold_s", "cold (full prefill)", "o-"), ("disk_s", "primed (restore from disk)", "s-"),
                              ("floor_s", "raw floor (state in memory)", "^--"), ("live_s", "prefix live", "d:")):
        ax.plot(x, [r[key] for r in rows], style, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{n // 1024}k" for n in x])
    ax.set_xlabel("document length, tokens")
    ax.set_ylabel("time to first token, s")
    ax.set_title(f"TTFT on a 2-core CPU ({model_name})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
