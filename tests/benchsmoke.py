"""Running a share of ``benchmarks/smoke.py`` (every benchmark at a tiny size) in its own process, as a user would,
and reading its table back."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def smoke_module():
    """``benchmarks/smoke.py`` imported as a module (its ``SMOKE``, ``HALVES`` and ``HELPERS``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke", ROOT / "benchmarks" / "smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    return smoke


def run_part(part: str, timeout_s: float = 600.0) -> dict[str, tuple[float, str, str]]:
    """Run ``benchmarks/smoke.py --part PART``; returns ``{benchmark: (seconds, exit, ok)}`` from its table.

    Raises:
        AssertionError: the runner failed (its error output is shown).
    """
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "smoke.py"), "--part", part], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=timeout_s)
    rows = {m[1]: (float(m[2]), m[3], m[4]) for m in
            re.finditer(r"^\| (\w+) \| ([\d.]+) \| (.*?) \| \d+ \| (yes|NO) \|$", done.stdout, re.MULTILINE)}
    assert done.returncode == 0 and rows, f"{done.stdout[-2000:]}\n{done.stderr[-6000:]}"
    return rows
