"""Session snapshots: each session's own KV state (cached prefix plus its history), kept in the
RAM tier after every answer, so that switching between sessions restores a snapshot instead of
re-evaluating the history.

A snapshot is the context's token ids after an answer, the exact text they stand for (the
prompt's rendered text plus the answer's tokens detokenized), and the KV state under a
``session-`` key in the shared RAM tier (``RamTier``), where it competes, least recently used
first, with document prefixes. Its ``Splice`` lets the next prompt start with the very tokens
in the snapshot (see ``Splice``), so the whole previous context is reused.
Snapshots live in memory only; after a restart a session falls back to its document prefix.

``take`` and ``restore`` expect the caller to hold ``engine.lock``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from backend.inference import Engine, EngineError, common_prefix_len
from backend.kvcache.fingerprint import entry_key
from backend.kvcache.prefix import PrefixResult
from backend.kvcache.ram_tier import RamTier


@dataclass(frozen=True)
class Splice:
    """Token ids known to stand for a text: a session's previous prompt plus the answer's tokens
    as generated. A prompt whose text starts with ``text`` starts with ``tokens``.

    Re-tokenizing an answer's text need not give back the tokens the model generated (BPE
    merges differently; invalid UTF-8 comes back as U+FFFD), and every differing token ends the
    reusable prefix. llama.cpp's server keeps generated tokens in its slot for the same reason.
    """

    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    """One session's context after its last answer.

    Attributes:
        key: its RAM-tier key (``session-`` + ``entry_key(fingerprint, tokens)``).
        fingerprint: what the state depends on (``fingerprint.fingerprint``); another model or
            setting makes the snapshot unusable.
        splice: the tokens in the context and the text they stand for.
    """

    key: str
    fingerprint: dict
    splice: Splice

    @property
    def n_tokens(self) -> int:
        """Tokens in the snapshot."""
        return len(self.splice.tokens)


class SessionSnapshots:
    """The latest snapshot of each session, its state kept in the RAM tier.

    Args:
        ram: the KV cache's RAM tier (its budget bounds the snapshots' bytes too).
        max_sessions: most sessions whose token lists are remembered (least recently used out).
    """

    def __init__(self, ram: RamTier, max_sessions: int = 256):
        self.ram = ram
        self.max_sessions = max_sessions
        self._items: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, owner: str, session_id: str, fp: dict) -> Snapshot | None:
        """The session's snapshot if it was taken under fingerprint ``fp``, else None."""
        with self._lock:
            snap = self._items.get((owner, session_id))
            if snap is None or snap.fingerprint != fp:
                return None
            self._items.move_to_end((owner, session_id))
            return snap

    def take(self, engine: Engine, owner: str, session_id: str, prompt_tokens: list[int], prompt_text: str,
             fp: dict, seq: int = 0) -> Snapshot | None:
        """Snapshot sequence ``seq`` after an answer to a prompt (caller holds ``engine.lock``).

        Args:
            engine: the engine that just answered; sequence ``seq`` starts with ``prompt_tokens``.
            owner / session_id: the session.
            prompt_tokens: the prompt that was answered, token ids.
            prompt_text: the rendered text those tokens stand for.
            fp: the current fingerprint.
            seq: the sequence that answered.

        Returns:
            The snapshot, or None when the sequence no longer holds the prompt (nothing kept).
        """
        context = engine.context_tokens(seq)
        if context[: len(prompt_tokens)] != prompt_tokens:
            return None
        generated = context[len(prompt_tokens):]
        splice = Splice(prompt_text + engine.detokenize(generated), tuple(context))
        snap = Snapshot("session-" + entry_key(fp, context), fp, splice)
        self.ram.put(snap.key, engine.get_state(seq))
        with self._lock:
            old = self._items.pop((owner, session_id), None)
            self._items[(owner, session_id)] = snap
            while len(self._items) > self.max_sessions:
                _, dropped = self._items.popitem(last=False)
                self.ram.delete(dropped.key)
        if old is not None and old.key != snap.key:
            self.ram.delete(old.key)
        return snap

    def restore(self, engine: Engine, snap: Snapshot | None, prefix: list[int],
                tokens: list[int], seq: int = 0) -> PrefixResult | None:
        """Load the session's snapshot into sequence ``seq`` when it starts with ``prefix`` and holds
        more of ``tokens`` than the sequence does.

        Caller must hold ``engine.lock``.

        Args:
            engine: the loaded engine.
            snap: the session's snapshot (``get``), or None.
            prefix: the cached prefix this turn needs, token ids.
            tokens: what the sequence should start with (the prompt, or for a prefetch the
                snapshot's own tokens).
            seq: the sequence.

        Returns:
            tier ``ram`` with ``snapshot_tokens`` set, or None when the snapshot is missing,
            evicted, does not start with ``prefix``, or is no better than the live context.
        """
        if snap is None or list(snap.splice.tokens[: len(prefix)]) != prefix:
            return None
        shared = common_prefix_len(snap.splice.tokens, tokens)
        if shared <= common_prefix_len(engine.context_tokens(seq), tokens):
            return None
        state = self.ram.get(snap.key)
        if state is None:
            return None
        start = time.perf_counter()
        try:
            engine.set_state(state, list(snap.splice.tokens), seq)
        except EngineError:
            self.ram.delete(snap.key)
            return None
        return PrefixResult("ram", len(prefix), restore_s=time.perf_counter() - start,
                            state_bytes=len(state), snapshot_tokens=snap.n_tokens)

    def drop(self, owner: str, session_id: str) -> None:
        """Forget a session's snapshot (the session was deleted)."""
        with self._lock:
            snap = self._items.pop((owner, session_id), None)
        if snap is not None:
            self.ram.delete(snap.key)

    def clear(self) -> None:
        """Forget every snapshot."""
        with self._lock:
            snaps, self._items = list(self._items.values()), OrderedDict()
        for snap in snaps:
            self.ram.delete(snap.key)
