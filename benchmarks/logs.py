"""Logs under a burst: how much disk a burst of log lines leaves, and how fast the Logs panel reads the tail.

    .venv/bin/python benchmarks/logs.py [--burst-mb 100] [--cap-mb 20]

Writes ``--burst-mb`` of INFO lines through Python's logging into a model run's log (``RunLogs``, the Logs panel's
source) and into ``app.log`` as ``app.py`` sets it up (both rotate at a quarter of ``KVC_LOG_CAP_MB``), then reads
the last 200 lines at INFO as the panel does, 20 times. Prints the bytes left on disk against the cap and the read
time's median and p95.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.inference import RunLogs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst-mb", type=float, default=100.0)
    parser.add_argument("--cap-mb", type=float, default=20.0)
    args = parser.parse_args()
    cap = int(args.cap_mb * 2**20)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = RunLogs(folder / "runs", cap)
        runs.start("burst.gguf")
        app_log = RotatingFileHandler(folder / "app.log", maxBytes=max(cap // 4, 1), backupCount=3)
        root = logging.getLogger()
        root.addHandler(app_log)
        old = root.level
        root.setLevel(logging.INFO)
        line = "x" * 180
        written, started = 0, time.perf_counter()
        try:
            while written < args.burst_mb * 2**20:
                logging.getLogger("burst").info("%s %d", line, written)
                written += 230
        finally:
            root.setLevel(old)
            root.removeHandler(app_log)
            app_log.close()
        burst_s = time.perf_counter() - started
        reads = []
        for _ in range(20):
            t = time.perf_counter()
            got = runs.read(None, "INFO", 200)
            reads.append(time.perf_counter() - t)
        runs.close()
        on_disk = {"run logs": sum(p.stat().st_size for p in (folder / "runs").iterdir()),
                   "app.log": sum(p.stat().st_size for p in folder.glob("app.log*"))}
    print(f"{args.burst_mb:.0f} MB of log lines in {burst_s:.0f} s, cap {args.cap_mb:.0f} MB each\n")
    print("| log | on disk, MB | cap, MB | within the cap |\n|---|---:|---:|---|")
    for name, size in on_disk.items():
        print(f"| {name} | {size / 2**20:.1f} | {args.cap_mb:.0f} | {'yes' if size <= cap else 'NO'} |")
    print(f"\nLogs panel, last 200 lines at INFO: {len(got)} lines in {1000 * statistics.median(reads):.1f} ms median, "
          f"{1000 * sorted(reads)[int(0.95 * len(reads))]:.1f} ms p95")
    return 0 if all(size <= cap for size in on_disk.values()) else 1


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
