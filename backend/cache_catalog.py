"""The KV-cache entries a user can see and delete: what each holds, its size, and whether it fits
the loaded model."""

from __future__ import annotations

from dataclasses import dataclass

from backend.documents import DocumentService
from backend.engine import Engine
from backend.kv_cache import KVCacheStore, fingerprint


class CacheNotFound(ValueError):
    """No cache entry with that key belongs to the user; ``str(err)`` is one sentence."""


@dataclass(frozen=True)
class CacheInfo:
    """One saved prefix, as listed to its owner.

    Attributes:
        key: the entry's key (its file stem).
        documents: names of the documents in the prefix, in order (``doc_id`` when deleted).
        doc_ids: their ids.
        tokens: prefix length, tokens.
        bytes: size of the saved KV state, bytes.
        tier: ``ram`` when it is also held in memory (restores without a file read), else ``disk``.
        usable: True when it was saved under the loaded model's fingerprint (always False
            with no model loaded); other entries are kept until evicted or deleted.
        created_at / last_used_at: Unix seconds.
    """

    key: str
    documents: list[str]
    doc_ids: list[str]
    tokens: int
    bytes: int
    tier: str
    usable: bool
    created_at: float
    last_used_at: float


class CacheCatalog:
    """Lists and deletes a user's KV-cache entries.

    Args:
        kv_store: the cache files.
        engine: the loaded model, for the fingerprint.
        documents: for document names.
    """

    def __init__(self, kv_store: KVCacheStore, engine: Engine, documents: DocumentService):
        self.kv_store, self.engine, self.documents = kv_store, engine, documents

    def list(self, owner: str) -> list[CacheInfo]:
        """The owner's entries, most recently used first."""
        fp = fingerprint(self.engine) if self.engine.loaded else None
        names = {d.doc_id: d.name for d in self.documents.list(owner)}
        return [CacheInfo(e.key, [names.get(d, d) for d in e.doc_ids], list(e.doc_ids), e.n_tokens, e.state_bytes,
                          "ram" if e.key in self.kv_store.ram else "disk", fp is not None and e.fingerprint == fp,
                          e.created_at, e.last_used_at)
                for e in self.kv_store.entries() if e.owner == owner]

    def delete(self, owner: str, key: str) -> CacheInfo:
        """Delete one of the owner's entries.

        Returns:
            What was deleted.

        Raises:
            CacheNotFound: no such entry for this owner.
        """
        for info in self.list(owner):
            if info.key == key:
                self.kv_store.delete(key)
                return info
        raise CacheNotFound(f"Cache entry {key} does not exist; refresh the cache list.")
