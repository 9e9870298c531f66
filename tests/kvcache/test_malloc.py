"""Freed KV states go back to the system (``backend/kvcache/malloc.py``): in a fresh process that holds every
other one of 24 state-sized buffers (as an LRU leaves them), the freed half leaves its RSS. Without the fixed
threshold glibc serves them from an arena after the first free, and the holes stay resident."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CHURN = """
import ctypes, sys
sys.path.insert(0, {root!r})
from backend.kvcache.malloc import unmap_large_frees
if {fix}:
    assert unmap_large_frees()
def rss_mib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
first = (ctypes.c_uint8 * (12 << 20))(); ctypes.memset(first, 1, len(first)); del first  # raises glibc's threshold
held = []
for i in range(24):
    buf = (ctypes.c_uint8 * (7 << 20))(); ctypes.memset(buf, 1, len(buf)); held.append(buf)
before = rss_mib()
held = held[::2]  # the LRU evicts every other one
print(before - rss_mib())
"""


def freed_mib(fix: bool) -> float:
    out = subprocess.run([sys.executable, "-c", CHURN.format(root=str(ROOT), fix=fix)], capture_output=True, text=True,
                         timeout=60, check=True)
    return float(out.stdout.strip())


def test_evicted_states_leave_the_process_memory():
    assert freed_mib(fix=True) >= 0.75 * 12 * 7  # twelve 7 MiB buffers freed: most of their pages gone (0 without)
