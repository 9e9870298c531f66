"""The shared slot directory: llama-server replicas' saved slots, and the same states for the in-process engine.

llama-server's ``POST /slots/{id}?action=save`` writes ``llama_state_seq_save_file``: a 12-byte header (magic
``ggsq``, llama.cpp's sequence-state version, the count of 32-bit words that follow), the slot's tokens (plain,
or packed by the server: ``-1``, version ``1``, count, tokens, media count), then the sequence's KV state. The
in-process engine's state (``llama_state_seq_get_data``) is the same KV state behind another 8-byte prefix (magic
``0xaf143cd8`` and the sequence id). So a state moves between the two by its header and token list alone; llama.cpp's
own KV layout inside is never touched (llama.cpp refuses a state of another layout, flash attention or KV type).

A slot file is named by ``slot_name``: the hash of the portable fingerprint (model identity, state version, flash
attention, KV types, KV streams: ``portable``), the prefix tokens and the owner, so every replica and the app find
the same file for the same prefix. Beside each ``<name>.bin`` the app writes ``<name>.json``: that fingerprint, the
tokens' SHA-256, the documents (and chunks) the prefix holds, the owner, the size and an XXH3-128 of the file, so a
file cut short or replaced is never restored, and the caches panel lists the entry (tier ``remote``).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import xxhash

from backend.inference import count_images
from backend.kvcache.fingerprint import portable, tokens_sha256
from backend.kvcache.store import CacheEntry
from backend.storage import write_atomically
from backend.storage.paths import contained

log = logging.getLogger(__name__)

IO_MAGIC = 0xAF143CD8  # llama.cpp's in-memory sequence state starts with this, then the sequence id (llama-context.cpp)
FILE_MAGIC = llama_cpp.LLAMA_STATE_SEQ_MAGIC  # "ggsq"
STATE_VERSION = llama_cpp.LLAMA_STATE_SEQ_VERSION
PACKED = -1  # llama-server's packed token list starts with LLAMA_TOKEN_NULL, then its format version 1
SIDECAR_FORMAT = 1


class SlotFileError(ValueError):
    """A slot file that cannot be read as a sequence state (wrong magic or version, cut short, media tokens)."""


def slot_name(fp: dict, tokens: list[int], owner: str) -> str:
    """A slot file's name (without ``.bin``): SHA-256 of the portable fingerprint, the tokens' hash and the owner,
    32 hex characters (the owner is in it for the reason ``entry_key`` gives)."""
    blob = json.dumps(portable(fp), sort_keys=True).encode() + tokens_sha256(tokens).encode() + owner.encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def write_slot_file(path: Path, state, tokens: list[int]) -> int:
    """Write an in-process state (``Engine.get_state``) as a llama-server slot file, atomically.

    Args:
        path: the ``.bin`` file to write.
        state: the in-process state bytes (a ``c_uint8`` array or bytes), starting with ``IO_MAGIC``.
        tokens: the token ids the state holds (written as llama-server's plain token list, which it reads).

    Returns:
        Bytes written.

    Raises:
        SlotFileError: ``state`` is not an in-process sequence state.
    """
    view = memoryview(state).cast("B")
    if len(view) < 8 or struct.unpack_from("<I", view, 0)[0] != IO_MAGIC:
        raise SlotFileError("not an in-process sequence state")
    head = struct.pack("<III", FILE_MAGIC, STATE_VERSION, len(tokens)) + struct.pack(f"<{len(tokens)}i", *tokens)
    write_atomically(path, lambda f: (f.write(head), f.write(view[8:])))
    return len(head) + len(view) - 8


def read_slot_file(path: Path) -> tuple[list[int], ctypes.Array]:
    """Read a slot file as the in-process engine's state.

    Args:
        path: a ``.bin`` file llama-server (or ``write_slot_file``) wrote.

    Returns:
        ``(tokens, state)``: the token ids and the state as a ``c_uint8`` array for ``Engine.set_state``.

    Raises:
        SlotFileError: wrong magic or state version, a header that runs past the file, or a token list with
            images in it (a vision prompt's media chunks have no in-process form here).
        OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    if len(data) < 12:
        raise SlotFileError("shorter than a slot file's header")
    magic, version, count = struct.unpack_from("<III", data, 0)
    if magic != FILE_MAGIC or version != STATE_VERSION:
        raise SlotFileError(f"sequence state magic/version {magic:#x}/{version}, expected {FILE_MAGIC:#x}/{STATE_VERSION}")
    start = 12 + 4 * count
    if start > len(data):
        raise SlotFileError("its token list runs past the end of the file")
    words = list(struct.unpack_from(f"<{count}i", data, 12))
    tokens = _unpack_tokens(words)
    state = (ctypes.c_uint8 * (8 + len(data) - start))()
    struct.pack_into("<Ii", state, 0, IO_MAGIC, 0)
    ctypes.memmove(ctypes.addressof(state) + 8, data[start:], len(data) - start)
    return tokens, state


def _unpack_tokens(words: list[int]) -> list[int]:
    """llama-server's token list: plain, or packed (``PACKED``, version 1, count, tokens, media count)."""
    if not words or words[0] != PACKED:
        return words
    if len(words) < 3 or words[1] != 1:
        raise SlotFileError("an unknown packed token list")
    n = words[2]
    if 3 + n + 1 > len(words):
        raise SlotFileError("its packed token list is cut short")
    if words[3 + n] != 0:
        raise SlotFileError("it holds images, which only a replica with the same projector can restore")
    return words[3:3 + n]


def file_checksum(path: Path) -> str:
    """XXH3-128 of a whole file, hex."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class SlotRecord:
    """What the app knows of one slot file (its sidecar)."""

    name: str
    fingerprint: dict
    tokens: list[int]
    doc_ids: tuple[str, ...]
    chunks: tuple[int, ...]
    owner: str
    size: int
    checksum: str
    created_at: float


class SlotFiles:
    """The shared slot directory (``KVC_REMOTE_SLOT_DIR``): llama-server's ``--slot-save-path`` on every replica,
    read and written by the app when it can see it.

    Args:
        folder: the directory.
        budget_bytes: most bytes of slot files kept; the least recently used go first, never one holding a
            pinned document (``pinned``).
        pinned: returns whether an entry's documents are pinned (the app's ``Pins``).
    """

    def __init__(self, folder: Path, budget_bytes: int, pinned=lambda doc_ids: False):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.budget_bytes, self.pinned = budget_bytes, pinned

    def path(self, name: str) -> Path:
        """The slot file ``<name>.bin`` (llama-server's ``filename``).

        Raises:
            SlotFileError: ``name`` is not one ``slot_name`` makes (32 hex characters) or leads out of the folder.
        """
        path = contained(self.folder, name, suffix=".bin")
        if path is None:
            raise SlotFileError(f"not a slot file name: {name!r}")
        return path

    def _sidecar(self, name: str) -> Path:
        return self.path(name).with_suffix(".json")

    def record(self, name: str, fp: dict, tokens: list[int], doc_ids, owner: str, chunks=()) -> SlotRecord:
        """Describe a slot file just written (by a replica's save or ``export``): sidecar last, atomically.

        Raises:
            OSError: the file is missing or the sidecar cannot be written.
        """
        path = self.path(name)
        rec = {"format": SIDECAR_FORMAT, "name": name, "fingerprint": portable(fp), "tokens": list(map(int, tokens)),
               "tokens_sha256": tokens_sha256(tokens), "doc_ids": list(doc_ids), "chunks": list(chunks),
               "owner": owner, "size": path.stat().st_size, "checksum": file_checksum(path), "created_at": time.time()}
        write_atomically(self._sidecar(name), json.dumps(rec).encode())
        self.evict()
        return self._record(rec)

    @staticmethod
    def _record(rec: dict) -> SlotRecord:
        return SlotRecord(rec["name"], rec["fingerprint"], rec["tokens"], tuple(rec["doc_ids"]), tuple(rec["chunks"]),
                          rec["owner"], rec["size"], rec["checksum"], rec["created_at"])

    def get(self, name: str, fp: dict | None = None, tokens: list[int] | None = None, verify: bool = False):
        """The record of ``name`` when its file is there and agrees with its sidecar (size; with ``verify`` the
        checksum too), and with ``fp``/``tokens`` when given; else None. A file that disagrees is deleted."""
        try:
            rec = self._record(json.loads(self._sidecar(name).read_bytes()))
            size = self.path(name).stat().st_size
        except (OSError, ValueError, KeyError, TypeError):  # SlotFileError is a ValueError: a name that is not one
            return None
        if rec.name != name:  # a sidecar must describe its own file
            return None
        problem = ("size" if size != rec.size else
                   "fingerprint" if fp is not None and rec.fingerprint != portable(fp) else
                   "tokens" if tokens is not None and rec.tokens != list(tokens) else
                   "checksum" if verify and file_checksum(self.path(name)) != rec.checksum else "")
        if problem:
            log.warning("slot file %s does not match its record (%s); deleting it", name, problem)
            self.delete(name)
            return None
        return rec

    def export(self, name: str, fp: dict, tokens: list[int], state, doc_ids, owner: str, chunks=()) -> SlotRecord:
        """Write an in-process state as slot file ``name`` (for a replica to restore) and record it."""
        write_slot_file(self.path(name), state, tokens)
        return self.record(name, fp, tokens, doc_ids, owner, chunks)

    def load(self, name: str, fp: dict, tokens: list[int]) -> ctypes.Array | None:
        """The in-process state of slot file ``name`` holding ``tokens`` under ``fp`` (checksum verified), or None
        when there is none that matches (a bad one is deleted)."""
        rec = self.get(name, fp, tokens, verify=True)
        if rec is None:
            return None
        try:
            held, state = read_slot_file(self.path(name))
        except (SlotFileError, OSError) as exc:
            log.warning("slot file %s unreadable (%s); deleting it", name, exc)
            self.delete(name)
            return None
        if held != list(tokens):
            self.delete(name)
            return None
        with contextlib.suppress(OSError):
            os.utime(self.path(name))
        return state

    def touch(self, name: str) -> None:
        """Mark a slot file as just used (its mtime is its last use, for eviction)."""
        with contextlib.suppress(OSError, SlotFileError):
            os.utime(self.path(name))

    def entries(self) -> list[CacheEntry]:
        """Every recorded slot file, as a cache entry (``fingerprint`` the portable one), most recently used first."""
        out = []
        for side in self.folder.glob("*.json"):
            rec = self.get(side.stem)
            if rec is None:
                continue
            used = self.path(rec.name).stat().st_mtime
            out.append(CacheEntry(rec.name, len(rec.tokens), rec.size, rec.doc_ids, rec.owner, rec.created_at, used,
                                  rec.fingerprint, rec.chunks, count_images(rec.tokens)))
        return sorted(out, key=lambda e: e.last_used_at, reverse=True)

    def delete(self, name: str) -> None:
        """Remove a slot file and its sidecar (a name that is not one, ``path``, touches nothing)."""
        if contained(self.folder, name, suffix=".bin") is None:
            return
        self._sidecar(name).unlink(missing_ok=True)
        self.path(name).unlink(missing_ok=True)

    def evict(self) -> list[str]:
        """Delete least recently used slot files past the budget, never one holding a pinned document."""
        entries = self.entries()
        total = sum(e.state_bytes for e in entries)
        gone = []
        for e in reversed(entries):
            if total <= self.budget_bytes:
                break
            if self.pinned(e.doc_ids):
                continue
            self.delete(e.key)
            total -= e.state_bytes
            gone.append(e.key)
        return gone
