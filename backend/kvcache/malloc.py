"""Large buffers go back to the system when freed: the KV RAM tier's states are buffers of 1 to 60 MiB,
allocated and freed all day, and glibc's allocator kept them in its arenas.

glibc serves an allocation above ``M_MMAP_THRESHOLD`` with its own memory map, unmapped on ``free``; below it,
from an arena, which returns memory only from its top. The threshold starts at 128 KiB and rises to the size of
each mapped chunk freed, up to 32 MiB (mallopt(3), "M_MMAP_THRESHOLD"; malloc/malloc.c, ``mp_.mmap_threshold``),
so after the first state is evicted most later states land in arenas, and the holes the LRU leaves grow them: in
``benchmarks/soak.py`` (8 users, SmolLM2) 64 arena heaps held 3.4 GiB for a 2 GiB tier, and the app's RSS rose
7 % between minutes 10 and 31 with the tier full. Setting the threshold fixes it (and turns the dynamic rise off):
a 2 GiB LRU of such buffers churned by two threads held 2,050 MiB of RSS instead of 2,170-2,350.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
THRESHOLD_BYTES = 1 << 20  # every state (the smallest, a few hundred tokens of a 135M model, is about 5 MiB) mapped


def unmap_large_frees(threshold_bytes: int = THRESHOLD_BYTES) -> bool:
    """Make every allocation of ``threshold_bytes`` or more its own memory map, returned to the system on free
    (glibc's ``mallopt(M_MMAP_THRESHOLD, threshold_bytes)``); process-wide, idempotent.

    Args:
        threshold_bytes: the smallest allocation served by a memory map, bytes (glibc caps it at 32 MiB).

    Returns:
        True when set; False where the C library is not glibc (macOS, musl), which has no such knob.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's, without find_library's subprocess
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)) == 1
    if not done:
        log.warning("glibc refused M_MMAP_THRESHOLD %d: freed KV states may stay in its arenas", threshold_bytes)
    return done
