"""Where a benchmark's figures come from, printed under its table so a figure copied into ``docs/benchmarks.md``
carries it: the command as run, the date, the machine (CPU model, cores) and the lock the environment was
installed from (``requirements-test.lock``'s SHA-256, first 12 hex digits)."""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def lock_hash(lock: Path = ROOT / "requirements-test.lock") -> str:
    """The first 12 hex digits of the lock's SHA-256, or ``no lock``."""
    try:
        return hashlib.sha256(lock.read_bytes()).hexdigest()[:12]
    except OSError:
        return "no lock"


def stamp(argv: list[str] | None = None) -> str:
    """One line: ``_Ran `python benchmarks/x.py --args` on 2026-12-06, AMD EPYC (2 cores), lock 0123456789ab._``"""
    argv = sys.argv if argv is None else argv
    command = " ".join(["python", str(Path(argv[0]).relative_to(ROOT)) if Path(argv[0]).is_absolute() and
                        Path(argv[0]).is_relative_to(ROOT) else argv[0], *argv[1:]])
    return (f"\n_Ran `{command}` on {time.strftime('%Y-%m-%d')}, {cpu_model()} ({len(os.sched_getaffinity(0))} "
            f"cores), lock {lock_hash()}._")


def main_with_stamp(main) -> int:
    """Run a benchmark's ``main`` and print ``stamp`` after its output; returns its exit status."""
    status = main()
    print(stamp(), flush=True)
    return status or 0
