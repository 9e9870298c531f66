"""Benchmarks that never rot (issue 47): every script in ``benchmarks/`` runs at a tiny size to its end and prints
its table (``benchmarks/smoke.py``). Timings are not asserted. Half of them here, half in
``test_benchmark_smoke_2.py``, so the suite's two workers run them at once."""

from __future__ import annotations

import pytest
from benchsmoke import run_part
from conftest import ROOT


def test_every_benchmark_has_a_smoke_size():
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke", ROOT / "benchmarks" / "smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - smoke.HELPERS
    assert scripts == set(smoke.SMOKE), f"without a smoke size: {scripts - set(smoke.SMOKE)}"


@pytest.mark.slow
def test_the_first_half_of_the_benchmarks_run_and_print_their_tables():
    rows = run_part("1/2")
    assert len(rows) == 12 and all(ok == "yes" for _, _, ok in rows.values()), rows
