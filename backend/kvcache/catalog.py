"""The KV-cache entries a user can see and delete: what each holds, its size, and whether it fits
the loaded model; also which documents have a usable single-document cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from backend.documents import DocumentService
from backend.inference import Engine, model_identity
from backend.inference.loader import kv_bytes_per_token
from backend.kvcache.fingerprint import fingerprint
from backend.kvcache.slots import SlotFiles
from backend.kvcache.store import CacheEntry, KVCacheStore
from backend.storage.disk import size_text
from backend.storage.paths import is_hex_id

log = logging.getLogger(__name__)


class CacheNotFound(ValueError):
    """No cache entry with that key belongs to the user; ``str(err)`` is one sentence."""


@dataclass(frozen=True)
class CacheInfo:
    """One saved prefix, as listed to its owner.

    Attributes:
        key: the entry's key (its file stem).
        documents: names of the documents in the prefix, in order (``doc_id`` when deleted); for a
            RAG chunk prefix, ``"<name> · chunk <n>"`` (1-based) per chunk.
        doc_ids: their ids.
        tokens: prefix length, tokens.
        bytes: size of the saved KV state, bytes.
        tier: ``ram`` when it is also held in memory (restores without a file read), ``disk``, or ``remote``
            for a slot file of the llama-server replicas (the shared slot directory).
        usable: True when it was saved under the loaded model's fingerprint (always False
            with no model loaded; a slot file: when it is of the replicas' model); other entries are kept until
            evicted or deleted.
        created_at / last_used_at: Unix seconds.
        chunks: for a RAG chunk prefix, its chunk indexes.
        owner: the user who made it.
        pinned: it holds a pinned document, so eviction never deletes it (``KVCacheStore.pin``).
        images: how many images it holds (the prefix of a question about images).
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
    chunks: list[int] = field(default_factory=list)
    owner: str = ""
    pinned: bool = False
    images: int = 0

    @property
    def kind(self) -> str:
        """``image`` for the prefix of a question about images, ``chunk`` for a RAG chunk prefix, else
        ``document``."""
        return "image" if self.images else "chunk" if self.chunks else "document"

    @property
    def label(self) -> str:
        """What it holds, for a person: the documents (or chunks) joined by " + ", then its images
        ("report.pdf + 1 image"); "(instructions only)" when it holds neither."""
        held = list(self.documents) + ([f"{self.images} image{'s' * (self.images > 1)}"] if self.images else [])
        return " + ".join(held) or "(instructions only)"


class CacheCatalog:
    """Lists and deletes a user's KV-cache entries.

    Args:
        kv_store: the cache files.
        engine: the loaded model, for the fingerprint.
        documents: the documents, for their names.
        slots: the replicas' shared slot directory (None: no replicas, or it is not visible here).
    """

    def __init__(self, kv_store: KVCacheStore, engine: Engine, documents: DocumentService,
                 slots: SlotFiles | None = None):
        self.kv_store, self.engine, self.documents, self.slots = kv_store, engine, documents, slots

    def _entries(self) -> list[tuple[CacheEntry, str]]:
        """Every entry with its tier source: the app's own (``local``) and the slot directory's (``remote``)."""
        own = [(e, "local") for e in self.kv_store.entries()]
        return own + ([(e, "remote") for e in self.slots.entries()] if self.slots is not None else [])

    def _find(self, owner: str, key: str, every_owner: bool, action: str) -> tuple[CacheEntry, str]:
        """The entry ``key`` of ``owner`` (an admin's: anyone's, logged), checked against the pattern the app makes
        (``is_hex_id``) before any file is looked at.

        Raises:
            CacheNotFound: no such entry for this owner, or a key that is not one.
        """
        if not is_hex_id(key):
            raise CacheNotFound("There is no cache entry with that key; pick one from the cache list.")
        entry, where = self.kv_store.entry(key), "local"
        if entry is None and self.slots is not None:
            entry, where = next(((e, "remote") for e in self.slots.entries() if e.key == key), (None, "remote"))
        if entry is None or (entry.owner != owner and not every_owner):
            raise CacheNotFound(f"Cache entry {key} does not exist; refresh the cache list.")
        if entry.owner != owner:
            log.info("admin %s: %s the cache entry %s of %s", owner, action, key, entry.owner)
        return entry, where

    def _fingerprint(self) -> dict | None:
        """The loaded model's fingerprint, or None with no model."""
        return fingerprint(self.engine) if self.engine.loaded else None

    def _info(self, e: CacheEntry, fp: dict | None, names: dict[str, str], where: str = "local") -> CacheInfo:
        labels = [names.get(d, d) + ("" if c is None else f" · chunk {c + 1}") for d, c in e.parts]
        if where == "remote":
            tier = "remote"
            usable = e.fingerprint.get("model_sha256") == (self._model_sha() or "")
        else:
            tier = "ram" if e.key in self.kv_store.ram else "disk"
            usable = fp is not None and e.fingerprint == fp
        return CacheInfo(e.key, labels, list(e.doc_ids), e.n_tokens, e.state_bytes, tier, usable,
                         e.created_at, e.last_used_at, list(e.chunks), e.owner, self.kv_store.is_pinned(e), e.images)

    def _model_sha(self) -> str | None:
        """The identity of the model file loaded here (whole or its vocabulary), or None."""
        return model_identity(self.engine.model_path) if self.engine.model_path is not None else None

    def list(self, owner: str, every_owner: bool = False) -> list[CacheInfo]:
        """The owner's entries (an admin's view: everyone's), most recently used first.

        Args:
            owner: whose entries.
            every_owner: list every user's entries, each named by its own owner's documents.
        """
        entries = [(e, w) for e, w in self._entries() if every_owner or e.owner == owner]
        fp = self._fingerprint()
        names: dict[str, dict[str, str]] = {}
        for who in {e.owner for e, _ in entries}:
            names[who] = self.documents.store.names(who, {d for e, _ in entries if e.owner == who for d in e.doc_ids})
        return [self._info(e, fp, names[e.owner], w) for e, w in entries]

    def cached(self, owner: str) -> dict[tuple[str, ...], CacheEntry]:
        """Saved prefixes of whole documents of this owner usable by the loaded model, keyed by their
        document ids (most recently used first); RAG chunk prefixes are left out. With no model
        loaded, every such prefix of the owner is listed."""
        fp = self._fingerprint()
        out: dict[tuple[str, ...], CacheEntry] = {}
        for e in self.kv_store.entries():
            if e.owner == owner and e.doc_ids and not e.chunks and (fp is None or e.fingerprint == fp):
                out.setdefault(e.doc_ids, e)
        if self.slots is not None:  # the replicas' saved prefixes of this model
            sha = self._model_sha()
            for e in self.slots.entries():
                if e.owner == owner and e.doc_ids and not e.chunks and e.fingerprint.get("model_sha256") == sha:
                    out.setdefault(e.doc_ids, e)
        return out

    def delete(self, owner: str, key: str, every_owner: bool = False) -> CacheInfo:
        """Delete one of the owner's entries (an admin: anyone's).

        Returns:
            What was deleted.

        Raises:
            CacheNotFound: no such entry for this owner.
        """
        entry, where = self._find(owner, key, every_owner, "delete")
        info = self._info(entry, self._fingerprint(), self.documents.store.names(entry.owner, set(entry.doc_ids)),
                          where)
        (self.slots.delete if where == "remote" else self.kv_store.delete)(key)
        return info

    def pin(self, owner: str, key: str, pinned: bool = True, every_owner: bool = False) -> CacheInfo:
        """Pin (or unpin) the documents of one of the owner's entries, so that eviction keeps every entry
        holding them (``KVCacheStore.pin``); the pin outlives the entry and a restart.

        Args:
            owner: the user.
            key: the entry's key (``list``).
            pinned: False unpins.
            every_owner: an admin may pin anyone's entry.

        Returns:
            The entry as listed afterwards.

        Raises:
            CacheNotFound: no such entry for this owner.
        """
        entry, where = self._find(owner, key, every_owner, "pin" if pinned else "unpin")
        for doc_id in dict.fromkeys(entry.doc_ids):
            self.kv_store.pin(doc_id, pinned)
        if not pinned and self.slots is not None:
            self.slots.evict()
        return self._info(entry, self._fingerprint(), self.documents.store.names(entry.owner, set(entry.doc_ids)),
                          where)

    def budget(self) -> str:
        """The disk budget in words: bytes used of it, bytes pinned, and, with a model loaded, about how many
        tokens of its KV state the budget holds ("... holds about 186,000 tokens of this model's KV state"),
        from the GGUF's shapes and the loaded ``type_k``/``type_v`` (``kv_bytes_per_token``)."""
        entries = self.kv_store.entries()
        used = sum(e.state_bytes for e in entries)
        pinned = sum(e.state_bytes for e in entries if self.kv_store.is_pinned(e))
        line = f"{size_text(used)} of {size_text(self.kv_store.budget_bytes)} used, {size_text(pinned)} pinned"
        if self.engine.loaded:
            per_token = kv_bytes_per_token(self.engine.metadata, self.engine.params.type_k, self.engine.params.type_v)
            line += (f"; the budget holds about {self.kv_store.budget_bytes / per_token:,.0f} tokens of this "
                     f"model's KV state ({self.engine.params.type_k})")
        return line + "."

