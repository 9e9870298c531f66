"""Benchmarks that never rot (issue 47): every script in ``benchmarks/`` runs at a tiny size to its end and prints
its table (``benchmarks/smoke.py``). Timings are not asserted. Half of them here, half in
``test_benchmark_smoke_2.py``, so the suite's two workers run them at once."""

from __future__ import annotations

import pytest
from benchsmoke import run_part, smoke_module
from conftest import ROOT


def test_every_benchmark_has_a_smoke_size():
    smoke = smoke_module()
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - smoke.HELPERS
    assert scripts == set(smoke.SMOKE), f"without a smoke size: {scripts - set(smoke.SMOKE)}"
    assert sorted(smoke.HALVES[0] + smoke.HALVES[1]) == sorted(smoke.SMOKE), "each benchmark in exactly one half"


@pytest.mark.slow
def test_the_first_half_of_the_benchmarks_run_and_print_their_tables():
    rows = run_part("1/2")
    assert set(rows) == set(smoke_module().HALVES[0]) and all(ok == "yes" for _, _, ok in rows.values()), rows
