"""Pinned documents: their KV-cache entries are never evicted (``KVCacheStore.evict``). The set of document ids
lives in one JSON file in the cache folder, written whole and renamed (``backend.storage.disk.write_atomically``), so
pins survive a restart and a crash never leaves half a file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from backend.storage.disk import write_atomically

PINS_FILE = "documents.pins"  # a JSON list of document ids (not *.json: that glob is the cache sidecars)


class Pins:
    """The pinned document ids of one cache folder.

    Args:
        path: the pins file (``PINS_FILE`` in the cache folder); missing or unreadable means none.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._ids = frozenset(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            self._ids = frozenset()

    @property
    def ids(self) -> frozenset[str]:
        """The pinned document ids."""
        return self._ids

    def set(self, doc_id: str, pinned: bool) -> None:
        """Pin (or, with ``pinned`` False, unpin) a document and save the set.

        Raises:
            OSError: the file could not be written (the set is not changed then).
        """
        with self._lock:
            changed = (self._ids | {doc_id}) if pinned else (self._ids - {doc_id})
            write_atomically(self.path, json.dumps(sorted(changed)).encode())
            self._ids = changed

    def holds(self, doc_ids) -> bool:
        """True when any of ``doc_ids`` is pinned."""
        return not self._ids.isdisjoint(doc_ids)
