"""The sequence half of ``Engine``: which token ids each llama.cpp sequence holds, their KV state
(truncate, clear, copy out, restore), one batched ``llama_decode`` over several sequences, and
prefill and streaming of one sequence alone. ``Engine`` inherits it; the batch scheduler
(``backend.inference.batching``) drives many sequences through ``decode``.

Every method expects the caller to hold ``Engine.lock``.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from typing import Self

import llama_cpp

from backend.inference.sequence import SeqRun, TokenText
from backend.inference.types import EngineError, Interrupted, Sampling, StreamStats


class EngineLock:
    """The engine's re-entrant lock, which also says how many threads are waiting for it, so the
    batch scheduler (which takes it for every step) can step aside for a model load instead of
    winning the lock back step after step (Python's locks are not first-come first-served)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._waiting = 0
        self._count = threading.Lock()

    @property
    def waiting(self) -> int:
        """Threads now blocked in ``acquire``."""
        return self._waiting

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (see ``threading.RLock.acquire``)."""
        with self._count:
            self._waiting += 1
        try:
            return self._lock.acquire(blocking, timeout)
        finally:
            with self._count:
                self._waiting -= 1

    def release(self) -> None:
        """Give the lock back."""
        self._lock.release()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Sequences:
    """Per-sequence state over the loaded ``llama_cpp.Llama`` (see the module docstring).

    The class that mixes it in provides ``_require()`` (the ``Llama``, or ``NoModelLoaded``),
    ``params`` (``LoadParams``), ``is_eog`` and ``token_bytes``, and fills ``_seq_tokens``,
    ``seq_owners`` and ``_batch`` when a model is installed.
    """

    _seq_tokens: list[list[int]]
    seq_owners: list[str | None]
    _batch: llama_cpp.llama_batch | None

    # sequences and KV state ----------------------------------------------------------------
    @property
    def n_seq_max(self) -> int:
        """Sequences the context holds side by side (``LoadParams.n_seq_max``)."""
        self._require()
        return len(self._seq_tokens)

    @property
    def n_batch(self) -> int:
        """Most tokens one ``decode`` call takes."""
        self._require()
        return self.params.n_batch

    @property
    def ctx(self):
        """The raw ``llama_context`` pointer (samplers read its logits)."""
        return self._require().ctx

    def context_tokens(self, seq: int = 0) -> list[int]:
        """Token ids whose KV entries sequence ``seq`` holds, in position order."""
        self._require()
        return list(self._seq_tokens[seq])

    def claim(self, seq: int, owner: str) -> None:
        """Give sequence ``seq`` to ``owner``, emptying it first when it holds another user's tokens,
        so no user's turn reuses (or can time) KV entries another user put there.

        Args:
            seq: the sequence.
            owner: the user about to use it.
        """
        self._require()
        if self.seq_owners[seq] not in (None, owner):
            self.clear_context(seq)
        self.seq_owners[seq] = owner

    def truncate(self, seq: int, keep: int) -> int:
        """Drop sequence ``seq``'s KV entries from position ``keep`` on.

        Returns:
            Tokens the sequence holds afterwards: ``keep``, or 0 when llama.cpp cannot cut the
            sequence there (models with recurrent or sliding-window layers) and cleared it instead.
        """
        self._require()
        memory = llama_cpp.llama_get_memory(self.ctx)
        if keep < len(self._seq_tokens[seq]) and not llama_cpp.llama_memory_seq_rm(memory, seq, keep, -1):
            llama_cpp.llama_memory_seq_rm(memory, seq, -1, -1)
            keep = 0
        del self._seq_tokens[seq][keep:]
        return len(self._seq_tokens[seq])

    def hold(self, seq: int, tokens: list[int]) -> None:
        """Record that sequence ``seq`` now also holds ``tokens``, evaluated outside ``decode`` (an image's
        embeddings, decoded by libmtmd; ``tokens`` are its placeholders)."""
        self._require()
        self._seq_tokens[seq].extend(tokens)

    def clear_context(self, seq: int | None = None) -> None:
        """Drop every KV entry of sequence ``seq`` (None: of every sequence)."""
        self._require()
        for s in range(self.n_seq_max) if seq is None else (seq,):
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self.ctx), s, -1, -1)
            self._seq_tokens[s].clear()

    def decode(self, work: list[tuple[int, list[int], bool]]) -> dict[int, int]:
        """Evaluate one batch: each item's tokens appended to its sequence, all in one ``llama_decode``.

        Args:
            work: ``(seq, tokens, logits)`` items, at most ``n_batch`` tokens in all; ``logits``
                asks for the logits of the item's last token.

        Returns:
            ``{seq: batch position}`` of the logits requested (read them with a ``SeqSampler``).

        Raises:
            EngineError: llama.cpp failed (no sequence's tokens are recorded then).
        """
        total = sum(len(tokens) for _, tokens, _ in work)
        if total > self.params.n_batch:  # before any write: the C batch holds n_batch tokens
            raise EngineError(f"A batch of {total} tokens is more than n_batch {self.params.n_batch}.")
        batch, outputs, n = self._batch, {}, 0
        for seq, tokens, logits in work:
            pos = len(self._seq_tokens[seq])
            for i, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos + i, 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = logits and i == len(tokens) - 1
                n += 1
            if logits and tokens:
                outputs[seq] = n - 1
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama.cpp could not evaluate the batch (llama_decode returned {rc}).")
        for seq, tokens, _ in work:
            self._seq_tokens[seq].extend(tokens)
        return outputs

    def prefill(self, tokens: list[int], should_stop: Callable[[], bool] | None = None,
                chunk_tokens: int | None = None, seq: int = 0, media: dict | None = None) -> int:
        """Make sequence ``seq`` hold exactly ``tokens``, reusing any matching prefix already there.

        Args:
            tokens: the token sequence the sequence must hold afterwards.
            should_stop: checked between chunks; when it returns True the prefill stops.
            chunk_tokens: tokens evaluated between checks (default and most: ``n_batch``).
            seq: the sequence.
            media: images among ``tokens`` (``SeqRun``'s ``media``).

        Returns:
            Number of tokens actually evaluated.

        Raises:
            Interrupted: ``should_stop`` returned True before the end; the sequence then holds a
                shorter prefix of ``tokens``.
        """
        run = SeqRun(self, seq, tokens, None, StreamStats(), media=media)
        keep, step = run.position, min(chunk_tokens or self.n_batch, self.n_batch)
        try:
            while run.prefilling:
                if should_stop is not None and should_stop():
                    raise Interrupted(f"prefill stopped after {run.position - keep} of {len(tokens) - keep} tokens")
                chunk = run.take(step)
                if chunk:
                    self.decode([(seq, chunk, False)])
                    run.evaluated(len(chunk), None)
        finally:
            run.close()
        return len(tokens) - keep

    def get_state(self, seq: int = 0) -> ctypes.Array:
        """Copy the KV state of sequence ``seq`` (llama.cpp's ``llama_state_seq_get_data``).

        Returns:
            Raw state bytes as a ``c_uint8`` array (one copy, no conversion to ``bytes``): KV cells
            only, no logits (they would be n_vocab floats per output). A state taken from one
            sequence restores into any other of the same model and settings.
        """
        ctx = self.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq)
        if written == 0:
            raise EngineError("llama.cpp could not copy the KV state.")
        return buf if written == size else (ctypes.c_uint8 * written).from_buffer(buf)

    def set_state(self, data: bytes | ctypes.Array, tokens: list[int], seq: int = 0) -> None:
        """Replace sequence ``seq``'s KV entries with a saved state holding ``tokens``.

        Args:
            data: state from ``get_state`` under the same model and settings, as bytes (copied
                once into a C buffer) or as a ``c_uint8`` array (handed to llama.cpp as is).
            tokens: the token ids that state was computed from.
            seq: the sequence to restore into.

        Raises:
            EngineError: llama.cpp rejected the state (the sequence is left empty).
        """
        self.clear_context(seq)
        buf = data if isinstance(data, ctypes.Array) else (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(self.ctx, buf, len(data), seq) != len(data):
            self.clear_context(seq)
            raise EngineError("llama.cpp rejected the saved KV state.")
        self._seq_tokens[seq] = list(tokens)

    # generation --------------------------------------------------------------------------
    def stream(self, tokens: list[int], sampling: Sampling, stats: StreamStats, seq: int = 0,
               media: dict | None = None) -> Iterator[str]:
        """Generate from a prompt in sequence ``seq`` alone (the serial path; ``Scheduler`` batches
        several), reusing the longest prefix the sequence already holds.

        Caller must hold ``lock`` for the whole iteration.

        Args:
            tokens: prompt token ids.
            sampling: sampling settings.
            stats: filled in as generation proceeds (see ``StreamStats``).
            seq: the sequence.
            media: images among ``tokens`` (``SeqRun``'s ``media``).

        Yields:
            Text pieces; multi-byte UTF-8 characters split across tokens are joined first.

        Raises:
            EngineError: the prompt does not fit ``n_ctx``, or llama.cpp failed.
        """
        run, text = SeqRun(self, seq, tokens, sampling, stats, media=media), TokenText(self)
        try:
            while not run.done:
                chunk = run.take(self.n_batch)
                if not chunk:  # an image was evaluated; its text follows
                    continue
                outputs = self.decode([(seq, chunk, run.wants_logits)])
                token = run.evaluated(len(chunk), outputs.get(seq))
                piece = text.feed(token) if token is not None else ""
                if piece:
                    yield piece
            tail = text.flush()
            if tail:
                yield tail
        finally:
            run.close()
