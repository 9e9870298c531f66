"""Every benchmark at a tiny size, so none of them rots: each runs to its end and prints its table.

    .venv/bin/python benchmarks/smoke.py               # all of them, one after the other, in this process
    .venv/bin/python benchmarks/smoke.py --part 1/2    # half of them (the test suite runs the two halves at once)
    .venv/bin/python benchmarks/smoke.py ttft chaos    # only these

The sizes (``SMOKE``) are the smallest that still take every step of a benchmark, on the synthetic models where
the figure does not need a real one; the figures they print mean nothing. Each benchmark runs as ``__main__`` in
this process (``runpy``), so the imports (Gradio, torch, LanceDB) are paid once; its output is kept, and the run
prints one row per benchmark: seconds, exit status, lines printed. Exits 1 when any failed or printed no table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import runpy
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SMOKE = {  # benchmark -> its arguments at the smallest size that takes every step
    "startup": ["--runs", "1", "--configs", "tiny", "--documents", "3", "--warm-only"],
    "replicas": ["--lengths", "300", "--model", "tiny", "--chats", "2", "--decode-tokens", "4"],
    "chaos": ["--kills", "1", "--max-minutes", "1"],
    "answers": ["--articles", "1", "--per-article", "1", "--max-tokens", "4", "--n-ctx", "1024",
                "--modes", "oracle,direct"],
    "prefill": ["--models", "tiny", "--lengths", "300", "--runs", "1", "--questions", "0"],
    "kv_types": ["--questions", "0", "--doc-tokens", "200", "--n-ctx", "512", "--rows", "1"],
    "concurrency": ["--models", "tiny", "--chats", "1", "2", "--modes", "cag", "--max-tokens", "4",
                    "--n-ctx", "2048"],
    "threads": ["--repeats", "1", "--configs", "1"],
    "layouts": ["--articles", "1", "--per-article", "1", "--max-tokens", "4", "--layouts", "app"],
    "citations": ["--articles", "1", "--per-article", "1", "--unanswerable", "1", "--doc-tokens", "400",
                  "--max-tokens", "4"],
    "load": ["--users", "1", "--turns", "1", "--max-tokens", "4"],
    "library": ["--documents", "3", "--delete", "1"],
    "ocr": ["--documents", "1"],
    "search_latency": ["--sizes", "300", "--queries", "3", "--articles", "1"],
    "ingest": ["--repeats", "1", "--files", "2"],
    "modes": ["--articles", "1", "--per-article", "1", "--lengths", "256", "--max-tokens", "4"],
    "retrieval": ["--articles", "1", "--limit", "10"],
    "unreadable": [],
    "multihop": ["--questions", "2", "--mmr", "0.9"],
    "images": ["--width", "320", "--height", "200", "--repeats", "1", "--preset", "tiny"],
    "ttft": ["--preset", "tiny", "--lengths", "256", "--repeats", "1"],
    "fuzz": ["--files", "8", "--requests", "8"],
    "soak": ["--users", "1", "--minutes", "0.1", "--warm-up", "0", "--preset", "tiny", "--sample", "5",
             "--purge-delay", "1", "--out", "/tmp/kvc-soak-smoke"],
    "logs": ["--burst-mb", "2", "--cap-mb", "1"],
    "verifier": ["--limit-pairs", "8", "--limit-test", "16", "--max-length", "64", "--batch", "8", "--reader",
                 "bundled", "--reader-pairs", "2"],
}
HALVES = (  # --part 1/2 and 2/2: about the same time each (measured side by side, as the suite runs them)
    ["startup", "chaos", "prefill", "answers", "concurrency", "threads", "citations", "library", "modes",
     "unreadable", "images", "search_latency"],
    ["replicas", "soak", "fuzz", "kv_types", "layouts", "load", "ocr", "ingest", "retrieval", "multihop", "logs",
     "ttft", "verifier"],
)
HELPERS = {"squad", "verdict_fit", "smoke", "provenance", "soak_figures"}  # modules the benchmarks import; not benchmarks


def run_one(name: str) -> tuple[int | str, float, str]:
    """Run ``benchmarks/<name>.py`` with its ``SMOKE`` arguments as ``__main__`` in this process.

    Returns:
        ``(exit status, seconds, what it printed on stdout)``; the status is a one-line error for an exception.
    """
    argv, out, started = sys.argv, io.StringIO(), time.perf_counter()
    sys.argv = [str(HERE / f"{name}.py"), *SMOKE[name]]
    status: int | str = 0
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(HERE / f"{name}.py"), run_name="__main__")
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else str(exc.code))
    except Exception as exc:  # noqa: BLE001 (a failing benchmark is reported, the others still run)
        traceback.print_exc()
        status = f"{type(exc).__name__}: {exc}"
    finally:
        sys.argv = argv
    return status, time.perf_counter() - started, out.getvalue()


def printed_a_table(text: str) -> bool:
    """Whether a benchmark's output holds a table: Markdown rows (``| a | b |``) or aligned columns, 2 rows or more."""
    rows = [line for line in text.splitlines() if line.strip()]
    return sum(line.startswith("|") for line in rows) >= 2 or len(rows) >= 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--part", default="1/1", help="K/N: the K-th of N shares of the list (HALVES for 2)")
    args = parser.parse_args()
    k, n = (int(x) for x in args.part.split("/"))
    names = args.names or (HALVES[k - 1] if n == 2 else [name for i, name in enumerate(SMOKE) if i % n == k - 1])
    sys.path[:0] = [str(HERE), str(ROOT), str(ROOT / "models")]
    results = []
    for name in names:
        status, seconds, text = run_one(name)
        ok = status == 0 and printed_a_table(text)
        results.append((name, status, seconds, len(text.splitlines()), ok))
        print(f"{name}: {'ok' if ok else 'FAILED'} in {seconds:.1f} s", file=sys.stderr, flush=True)
        if not ok:
            print(text[-3000:], file=sys.stderr)
    print("| benchmark | seconds | exit | lines printed | ok |\n|---|---:|---|---:|---|")
    for name, status, seconds, lines, ok in results:
        print(f"| {name} | {seconds:.1f} | {status} | {lines} | {'yes' if ok else 'NO'} |")
    print(f"\n{len(results)} benchmarks in {sum(r[2] for r in results):.0f} s")
    return 0 if all(r[4] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
