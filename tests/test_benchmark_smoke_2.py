"""The second half of the benchmarks at a tiny size (see ``test_benchmark_smoke.py``)."""

from __future__ import annotations

import pytest
from benchsmoke import run_part, smoke_module


@pytest.mark.slow
def test_the_second_half_of_the_benchmarks_run_and_print_their_tables():
    rows = run_part("2/2")
    assert set(rows) == set(smoke_module().HALVES[1]) and all(ok == "yes" for _, _, ok in rows.values()), rows
