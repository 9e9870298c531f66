"""Prefill and decode speed against ``n_threads`` / ``n_threads_batch``, OpenMP's wait policy and
``use_extra_bufts`` (llama.cpp's extra CPU buffer types: AMX, repacked weights), on a real model, each configuration in its own process (OpenMP reads its environment once).

    .venv/bin/python benchmarks/threads.py [--model models/bundled/SmolLM2-135M-Instruct.Q4_1.gguf] [--repeats 3]
        [--configs 5]

Prints one row per configuration: prefill tok/s (a 512-token prompt in one batch) and decode tok/s
(128 greedy tokens), medians over the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT.parent / "shared" / "testdata" / "longdoc" / "pride_and_prejudice_pg1342.txt"


def measure(model: str, n_threads: int, n_threads_batch: int, extra_bufts: bool, repeats: int) -> dict:
    """Runs inside the child: load once, then prefill + decode ``repeats`` times."""
    sys.path.insert(0, str(ROOT))
    from backend.inference.loader import LoadParams, open_model

    opened = open_model(Path(model), LoadParams(n_ctx=1024, n_threads=n_threads, n_threads_batch=n_threads_batch,
                                                use_extra_bufts=extra_bufts))
    llm = opened.llm
    prompt = opened.vocab.tokenize(BOOK.read_text(encoding="utf-8")[:20000].encode(), add_bos=False)[:512]
    prefill, decode = [], []
    for _ in range(repeats):
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        start = time.perf_counter()
        llm.eval(prompt)
        prefill.append(len(prompt) / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(128):
            llm.eval([llm.sample(temp=0.0)])
        decode.append(128 / (time.perf_counter() - start))
    return {"prefill": statistics.median(prefill), "decode": statistics.median(decode)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "bundled" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, help="threads for the all-cores rows (default: every core)")
    parser.add_argument("--configs", type=int, default=5, help="only the first N configurations (a smoke run)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, nb, extra = (int(x) for x in args.child.split(","))
        print(json.dumps(measure(args.model, n, nb, bool(extra), args.repeats)))
        return 0
    cores = args.cores or len(os.sched_getaffinity(0))
    configs = [(1, cores, "active", 1), (cores, cores, "active", 1), (cores, cores, "passive", 1), (1, 1, "active", 1),
               (cores, cores, "active", 0)]
    rows = []
    for n, nb, wait, extra in configs[: args.configs]:
        env = {**os.environ, "OMP_WAIT_POLICY": wait.upper()}
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--repeats", str(args.repeats),
                              "--child", f"{n},{nb},{extra}"], env=env, capture_output=True, text=True, check=False)
        crashed = out.returncode < 0 and signal.Signals(-out.returncode).name
        result = next((line for line in reversed(out.stdout.splitlines()) if line.startswith("{")), None)
        rows.append((n, nb, wait, extra, crashed or (json.loads(result) if result else f"no result: {out.stderr[-200:]}")))
    print(f"model: {Path(args.model).name}, {cores} cores, medians of {args.repeats}\n")
    print("| n_threads (decode) | n_threads_batch (prefill) | OMP_WAIT_POLICY | use_extra_bufts | prefill tok/s "
          "| decode tok/s |")
    print("|---:|---:|---|---|---:|---:|")
    for n, nb, wait, extra, r in rows:
        speeds = f"crashed ({r}) | crashed" if isinstance(r, str) else f"{r['prefill']:,.0f} | {r['decode']:.1f}"
        print(f"| {n} | {nb} | {wait} | {bool(extra)} | {speeds} |")
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
