"""KV-cache entries and their store: a RAM tier over files on disk, with checksums and LRU budgets.

An entry is two files under ``data_dir/kvcache``:

* ``<key>.kv``   raw bytes from ``llama_state_seq_get_data`` (no pickle, no logits);
* ``<key>.json`` the sidecar: format version, fingerprint, prefix token ids and their
  SHA-256, payload XXH3-128 checksums (one per 32 MiB) and size, document ids, owner, creation time (the
  payload's mtime is its last use).

Both are written to a temp file and renamed into place (payload first, sidecar last, so a
sidecar never points at a partial payload). ``<key>`` is the SHA-256 of the fingerprint and
the prefix tokens (``backend.kvcache.fingerprint``), so caches of different models or settings
live side by side. A file whose sidecar, fingerprint, token hash or checksum disagrees is
deleted and recomputed, never loaded.
``backend.kvcache.prefix`` uses this store to get prefixes into the model's context.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from backend.inference import EngineError, count_images
from backend.kvcache.fingerprint import portable, tokens_sha256
from backend.kvcache.malloc import unmap_large_frees
from backend.kvcache.payload import CHECKSUM_CHUNK_BYTES, map_file, payload_checksums, touch
from backend.kvcache.pins import PINS_FILE, Pins
from backend.kvcache.ram_tier import RamTier
from backend.storage.disk import free_bytes, full_sentence, is_disk_full, size_text, write_atomically
from backend.storage.paths import contained

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: XXH3-128 (was SHA-256), last use is the payload's mtime; 3: one XXH3-128 per chunk


@dataclass(frozen=True)
class CacheEntry:
    """A saved prefix, as described by its sidecar.

    Attributes:
        key: file stem.
        n_tokens: prefix length, tokens.
        state_bytes: payload size, bytes.
        doc_ids: documents in the prefix, in order.
        owner: who primed it.
        created_at / last_used_at: Unix seconds.
        fingerprint: the fingerprint it was saved under.
        chunks: for a RAG chunk prefix, the chunk index of each entry of ``doc_ids`` (same
            length); empty for a prefix of whole documents.
        images: how many images the prefix holds (a chat question's, saved up to its last image).
    """

    key: str
    n_tokens: int
    state_bytes: int
    doc_ids: tuple[str, ...]
    owner: str
    created_at: float
    last_used_at: float
    fingerprint: dict
    chunks: tuple[int, ...] = ()
    images: int = 0

    @property
    def parts(self) -> tuple[tuple[str, int | None], ...]:
        """What the prefix holds, in order: ``(doc_id, chunk index or None for a whole document)``."""
        return prefix_parts(self.doc_ids, self.chunks)


def prefix_parts(doc_ids, chunks=()) -> tuple[tuple[str, int | None], ...]:
    """What a prefix holds, in order: ``(doc_id, chunk index, or None for a whole document)``."""
    return tuple(zip(doc_ids, chunks or (None,) * len(doc_ids)))


class CacheWriteError(EngineError):
    """A KV cache could not be saved; ``str(err)`` is one sentence for the user."""


class KVCacheStore:
    """Saved KV states: a RAM tier over a disk tier, each with an LRU size budget.

    Every state is on disk; the most recently used ones are also held in RAM (``ram``).

    Args:
        folder: ``data_dir/kvcache``.
        budget_bytes: disk budget, payload bytes; least recently used entries go first.
        ram_budget_bytes: RAM budget, payload bytes; 0 keeps nothing in RAM.
        disk_reserve_bytes: free space a save must leave on the disk (``backend.storage.disk``), bytes.
    """

    def __init__(self, folder: Path, budget_bytes: int, ram_budget_bytes: int = 0, disk_reserve_bytes: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.budget_bytes = budget_bytes
        self.disk_reserve_bytes = disk_reserve_bytes
        self.ram = RamTier(ram_budget_bytes)
        unmap_large_frees()  # states churned all day: freed ones go back to the system, not to glibc's arenas
        self._lock = threading.Lock()
        self.swept = self.sweep()
        self._described: dict[str, tuple[tuple[int, int], CacheEntry]] = {}  # key -> (sidecar stamp, entry)
        self.pins = Pins(self.folder / PINS_FILE)
        self.slots = None  # the llama-server replicas' shared slot directory (``slots.SlotFiles``), a tier below disk

    def sweep(self) -> int:
        """Delete what a write cut short left behind: temp files, and a payload or sidecar without its
        other half (a payload is renamed into place before its sidecar). Run at start, before any write.

        Returns:
            How many files were deleted.
        """
        doomed = list(self.folder.glob("*.tmp"))
        payloads, sidecars = {p.stem for p in self.folder.glob("*.kv")}, {p.stem for p in self.folder.glob("*.json")}
        doomed += [self.folder / f"{key}.kv" for key in payloads - sidecars]
        doomed += [self.folder / f"{key}.json" for key in sidecars - payloads]
        for path in doomed:
            path.unlink(missing_ok=True)
        if doomed:
            log.warning("KV cache folder: deleted %d files a crash left half-written", len(doomed))
        return len(doomed)

    def _paths(self, key: str) -> tuple[Path, Path] | None:
        """An entry's payload and sidecar, or None for a key the app could not have made (``entry_key``: 32 hex
        characters) or one that would lead out of the folder: such a key names no entry, and no file is touched."""
        payload = contained(self.folder, key, suffix=".kv")
        return None if payload is None else (payload, payload.with_suffix(".json"))

    def save(self, key: str, fp: dict, tokens: list[int], state: bytes, doc_ids: list[str], owner: str,
             chunks: list[int] | tuple[int, ...] = ()) -> CacheEntry:
        """Store a state atomically, then evict past the budget.

        Args:
            key: ``entry_key(fp, tokens)``.
            fp: the fingerprint.
            tokens: prefix token ids the state holds.
            state: raw state bytes.
            doc_ids: documents in the prefix.
            owner: who primed it.
            chunks: for a RAG chunk prefix, each ``doc_ids`` entry's chunk index; empty for whole documents.

        Returns:
            The new entry.

        Raises:
            CacheWriteError: the disk is too full (it would leave less than ``disk_reserve_bytes``, or a
                write failed for lack of space); nothing of the entry is left on disk.
        """
        now = time.time()
        meta = {
            "format": FORMAT_VERSION, "key": key, "fingerprint": fp, "n_tokens": len(tokens),
            "tokens": list(map(int, tokens)), "tokens_sha256": tokens_sha256(tokens),
            "payload_xxh3_128": payload_checksums(state), "checksum_chunk_bytes": CHECKSUM_CHUNK_BYTES,
            "state_bytes": len(state),
            "doc_ids": list(doc_ids), "chunks": list(chunks), "owner": owner, "created_at": now,
        }
        paths = self._paths(key)
        if paths is None:
            raise ValueError(f"not a cache key: {key!r}")
        payload, sidecar = paths
        if free_bytes(self.folder) < len(state) + self.disk_reserve_bytes:
            raise CacheWriteError(full_sentence(f"the KV cache ({size_text(len(state))})", self.folder.parent))
        with self._lock:
            try:
                write_atomically(payload, state)
                write_atomically(sidecar, json.dumps(meta).encode())
                touch(payload, now)
            except OSError as exc:  # the payload without its sidecar is never read; drop it too
                payload.unlink(missing_ok=True)
                if is_disk_full(exc):
                    raise CacheWriteError(full_sentence("the KV cache", self.folder.parent)) from exc
                raise
        self.ram.put(key, state)
        self.evict()
        return self._entry(meta, now)

    def fetch(self, key: str, fp: dict, tokens: list[int]) -> tuple[ctypes.Array | None, str]:
        """A state from the RAM tier, else read and verified from disk (see ``load``).

        A RAM hit also marks the disk copy as just used, for the disk tier's LRU.

        Returns:
            ``(state, tier)``: tier ``ram`` or ``disk``; ``(None, "")`` when neither has a valid entry.
        """
        if self._paths(key) is None:
            return None, ""
        state = self.ram.get(key)
        if state is not None:
            with contextlib.suppress(OSError):
                touch(self._paths(key)[0])
            return state, "ram"
        state = self.load(key, fp, tokens)
        return (state, "disk") if state is not None else (None, "")

    def load(self, key: str, fp: dict, tokens: list[int]) -> ctypes.Array | None:
        """Read and verify a state; a bad entry is deleted and None returned.

        The payload is memory-mapped (private, copy-on-write) and that mapping is the buffer
        ``Engine.set_state`` hands to llama.cpp, so no bytes are copied before llama.cpp's own
        copy into the KV tensors; XXH3-128 is checked over the mapping, slices in parallel.
        XXH3 runs at about 30 GB/s here against 2 GB/s for SHA-256; it guards against damage
        (flipped bytes, truncation), not against an attacker who can write the cache folder.
        Using an entry touches the payload's mtime, which is its last-use time.

        Args:
            key: the entry's key.
            fp: the current fingerprint; must equal the sidecar's.
            tokens: the prefix tokens; their hash must equal the sidecar's.

        Returns:
            The state as a ctypes ``c_uint8`` array, or None when missing or invalid.
        """
        paths = self._paths(key)
        if paths is None or not paths[1].exists():
            return None
        payload, sidecar = paths
        try:
            meta = json.loads(sidecar.read_bytes())
            problem = self._verify_meta(meta, fp, tokens)
            data = None if problem else map_file(payload, int(meta["state_bytes"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("KV cache %s unreadable (%s); discarding", key, exc)
            self.delete(key)
            return None
        if not problem and payload_checksums(data) != meta.get("payload_xxh3_128"):
            problem = "checksum mismatch"
        if problem:
            log.warning("KV cache %s invalid (%s); discarding and recomputing", key, problem)
            self.delete(key)
            return None
        touch(payload)
        self.ram.put(key, data)
        return data

    @staticmethod
    def _verify_meta(meta: dict, fp: dict, tokens: list[int]) -> str:
        """Return why an entry's sidecar rules it out, or "" when it may be read."""
        if meta.get("format") != FORMAT_VERSION or meta.get("checksum_chunk_bytes") != CHECKSUM_CHUNK_BYTES:
            return "format version"
        if meta.get("fingerprint") != fp:
            return "fingerprint mismatch"
        if meta.get("tokens_sha256") != tokens_sha256(tokens):
            return "prefix tokens differ"
        return ""

    @staticmethod
    def _entry(meta: dict, last_used_at: float) -> CacheEntry:
        return CacheEntry(meta["key"], meta["n_tokens"], meta["state_bytes"], tuple(meta["doc_ids"]),
                          meta["owner"], meta["created_at"], last_used_at, meta["fingerprint"],
                          tuple(meta.get("chunks") or ()), count_images(meta.get("tokens") or ()))

    def entry(self, key: str) -> CacheEntry | None:
        """The entry with this key as its sidecar describes it (not verified), or None. A sidecar is parsed
        once and remembered while its file is unchanged (its mtime and size), so listing 1,000 entries costs
        two ``stat`` calls each instead of 1,000 JSON reads (each carries its prefix's token ids)."""
        paths = self._paths(key)
        if paths is None:
            return None
        payload, sidecar = paths
        try:
            side = sidecar.stat()
            used = payload.stat().st_mtime
            stamp = (side.st_mtime_ns, side.st_size)
            known = self._described.get(key)
            if known is None or known[0] != stamp:
                known = (stamp, self._entry(json.loads(sidecar.read_bytes()), 0.0))
                if known[1].key != key:  # a sidecar must describe its own files
                    return None
                self._described[key] = known
            return replace(known[1], last_used_at=used)
        except (OSError, ValueError, KeyError):
            self._described.pop(key, None)
            return None

    def tokens(self, key: str) -> list[int] | None:
        """The prefix token ids an entry's sidecar records, or None when unreadable."""
        paths = self._paths(key)
        if paths is None:
            return None
        try:
            return list(json.loads(paths[1].read_bytes())["tokens"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def entries(self) -> list[CacheEntry]:
        """Every entry with a readable sidecar and payload, most recently used first."""
        out = [e for e in (self.entry(p.stem) for p in self.folder.glob("*.json")) if e is not None]
        return sorted(out, key=lambda e: e.last_used_at, reverse=True)

    def find(self, portable_fp: dict, tokens: list[int], owner: str) -> str | None:
        """The key of an entry holding exactly ``tokens`` for ``owner`` whose fingerprint's portable part
        (``fingerprint.portable``) is ``portable_fp``: a state another llama.cpp engine of the same model and KV
        layout can restore (a llama-server replica). None when there is none."""
        for e in self.entries():
            if (e.owner == owner and e.n_tokens == len(tokens) and portable(e.fingerprint) == portable_fp
                    and self.tokens(e.key) == list(tokens)):
                return e.key
        return None

    def delete(self, key: str) -> None:
        """Remove an entry's files (missing files are fine; a key that is not one, ``_paths``, touches nothing)."""
        paths = self._paths(key)
        if paths is None:
            return
        self.ram.delete(key)
        self._described.pop(key, None)
        with self._lock:
            for path in paths:
                path.unlink(missing_ok=True)

    def delete_for_document(self, doc_id: str) -> int:
        """Delete every entry whose prefix includes ``doc_id`` (a pin stays: a re-indexed document's new
        entries are pinned too); returns how many."""
        doomed = [e.key for e in self.entries() if doc_id in e.doc_ids]
        for key in doomed:
            self.delete(key)
        return len(doomed)

    def delete_for_model(self, model_sha256: str) -> int:
        """Delete every entry saved under this model file (``fingerprint()["model_sha256"]``), from
        both tiers; returns how many."""
        doomed = [e.key for e in self.entries() if e.fingerprint.get("model_sha256") == model_sha256]
        for key in doomed:
            self.delete(key)
        return len(doomed)

    def usage(self) -> dict:
        """Entries and payload bytes per tier: ``{"disk": {"entries", "bytes"}, "ram": {...}}``
        (RAM counts session snapshots too)."""
        disk = self.entries()
        return {"disk": {"entries": len(disk), "bytes": sum(e.state_bytes for e in disk),
                         "budget_bytes": self.budget_bytes},
                "ram": {"entries": len(self.ram.keys()), "bytes": self.ram.used_bytes,
                        "budget_bytes": self.ram.budget_bytes}}

    # pins ----------------------------------------------------------------------------------
    @property
    def pinned(self) -> frozenset[str]:
        """Document ids whose entries eviction never deletes (``backend.kvcache.pins``)."""
        return self.pins.ids

    def pin(self, doc_id: str, pinned: bool = True) -> None:
        """Pin (or unpin) a document: while pinned, no entry whose prefix holds it is evicted, whatever
        the budget; pinned entries still count toward it, so other entries go first. Pins survive a restart.

        Raises:
            OSError: the pins file could not be written (the pin is not changed then).
        """
        self.pins.set(doc_id, pinned)
        if not pinned:
            self.evict()

    def is_pinned(self, entry: CacheEntry) -> bool:
        """True when the entry's prefix holds a pinned document."""
        return self.pins.holds(entry.doc_ids)

    def evict(self) -> list[str]:
        """Delete least recently used entries until the payloads fit the budget, never one that holds a
        pinned document (``pin``); returns the deleted keys. The payload files' sizes are summed first (a
        payload is exactly its state), so a save under the budget reads no sidecar."""
        with os.scandir(self.folder) as found:
            if sum(e.stat().st_size for e in found if e.name.endswith(".kv")) <= self.budget_bytes:
                return []
        entries = self.entries()
        total = sum(e.state_bytes for e in entries)
        entries = [e for e in entries if not self.is_pinned(e)]
        evicted = []
        while entries and total > self.budget_bytes:
            victim = entries.pop()
            total -= victim.state_bytes
            self.delete(victim.key)
            evicted.append(victim.key)
        return evicted
