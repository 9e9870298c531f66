"""The RAM tier of the KV cache: verified states kept in memory, least recently used out first.

A state here is the same raw ``llama_state_seq_get_data`` payload as on disk, held as the
``c_uint8`` buffer that ``Engine.set_state`` hands to llama.cpp, so a RAM hit costs no file
read, no checksum and no extra copy. States primed in this process are anonymous memory;
states promoted from disk are private memory maps of their files, kept resident by the page
cache (the kernel may drop clean pages under memory pressure and read them back on use). Keys are disk-tier keys (``entry_key``), which already hash
the fingerprint and the prefix tokens, so a key only ever names one exact state.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict


class RamTier:
    """An LRU map of key -> state buffer within a byte budget.

    Args:
        budget_bytes: the most state bytes kept; 0 turns the tier off.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = max(int(budget_bytes), 0)
        self._items: OrderedDict[str, ctypes.Array] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        """State bytes held now."""
        return self._bytes

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        """Keys held, most recently used first."""
        with self._lock:
            return list(reversed(self._items))

    def get(self, key: str) -> ctypes.Array | None:
        """The state for ``key`` (now the most recently used), or None."""
        with self._lock:
            buf = self._items.get(key)
            if buf is not None:
                self._items.move_to_end(key)
            return buf

    def put(self, key: str, state: bytes | ctypes.Array) -> list[str]:
        """Keep a state, evicting least recently used ones past the budget.

        Args:
            key: its disk-tier key.
            state: raw state bytes (copied once into a C buffer) or a ``c_uint8`` array (kept as is).

        Returns:
            Keys evicted to make room; a state larger than the whole budget is not kept.
        """
        size = len(state)
        if size > self.budget_bytes:
            return []
        buf = state if isinstance(state, ctypes.Array) else (ctypes.c_uint8 * size).from_buffer_copy(state)
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= len(old) if old is not None else 0
            self._items[key] = buf
            self._bytes += size
            evicted = []
            while self._bytes > self.budget_bytes:
                victim, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
                evicted.append(victim)
            return evicted

    def delete(self, key: str) -> None:
        """Forget ``key`` (a missing key is fine)."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
