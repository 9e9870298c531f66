"""One sequence's generation, step by step: what it puts into the next batch, and what it does
with the logits that batch gives back. ``Engine.stream`` runs one of these alone (the serial
path); ``backend.inference.batching.Scheduler`` runs several side by side in one batch
(continuous batching, as llama-server's slots do).
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable
from typing import Any, Protocol

from backend.inference.sampling import SeqSampler, group_logprobs
from backend.inference.types import EngineError, Sampling, StreamStats, common_prefix_len


class SequenceHost(Protocol):
    """What a sequence needs of the engine that holds it (``Engine`` is one); declared here so that this
    module, which ``engine.py`` builds on, imports nothing above it."""

    llm: Any  # the loaded llama_cpp.Llama
    ctx: Any  # its llama_context pointer

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_batch(self) -> int: ...

    def context_tokens(self, seq: int) -> list[int]: ...

    def truncate(self, seq: int, keep: int) -> int: ...

    def eog_tokens(self) -> tuple[int, ...]: ...

    def is_eog(self, token: int) -> bool: ...

    def token_bytes(self, token: int) -> bytes: ...

    def hold(self, seq: int, tokens: list[int]) -> None: ...


class MediaSpan(Protocol):
    """An image's stretch of a prompt (``backend.inference.vision.ImageSpan``): placeholders in the token
    list from ``start``, evaluated in one go by ``evaluate(seq, n_past, n_batch) -> seconds``."""

    start: int
    n_tokens: int

    def evaluate(self, seq: int, n_past: int, n_batch: int) -> float: ...


class SeqRun:
    """A prompt to get into sequence ``seq``, then (with ``sampling``) an answer to generate there.

    On creation the sequence keeps the longest prefix of ``tokens`` it already holds (at least
    one token is evaluated again, since its logits are needed to sample) and drops the rest.

    Args:
        engine: the loaded engine (the caller holds ``engine.lock`` while creating and stepping it).
        seq: the llama.cpp sequence id.
        tokens: the prompt, token ids.
        sampling: the answer's settings, or None to evaluate the prompt only (priming, prefetch).
        stats: filled in as it runs (``prompt_tokens``, ``reused_tokens``, ``first_token_at``,
            ``completion_tokens``, ``stop_reason``).
        milestones: ``{n_tokens: callback}``: the callback runs right after the sequence comes to
            hold exactly ``n_tokens`` tokens (a chunk never crosses one), e.g. to save a prefix.
        media: ``{start: MediaSpan}``: images in ``tokens``; each is evaluated alone where it starts
            (a text chunk never crosses one), unless the sequence already holds it.
        probe: with ``sampling`` None, token-id groups whose log-probabilities after the prompt go into
            ``stats.probe`` (``sampling.group_logprobs``); nothing is generated.

    Raises:
        EngineError: the prompt does not fit the sequence's context window (``n_ctx``).
    """

    def __init__(self, engine: SequenceHost, seq: int, tokens: list[int], sampling: Sampling | None, stats: StreamStats,
                 milestones: dict[int, Callable[[], None]] | None = None, media: dict[int, MediaSpan] | None = None,
                 probe: list[list[int]] | None = None):
        n_ctx = engine.n_ctx
        if len(tokens) + (1 if sampling else 0) > n_ctx:
            raise EngineError(f"The prompt is {len(tokens)} tokens, more than the context window of "
                              f"{n_ctx}; ask a shorter question or start a new chat.")
        keep = common_prefix_len(engine.context_tokens(seq), tokens)
        self.probe = probe if sampling is None else None
        if sampling is not None or self.probe:  # the last prompt token is evaluated again: its logits are read
            keep = min(keep, len(tokens) - 1)
        media = media or {}
        for span in media.values():  # an image is held whole or evaluated again whole
            if span.start < keep < span.start + span.n_tokens:
                keep = span.start
        keep = engine.truncate(seq, keep)
        self.media = {start: span for start, span in media.items() if start >= keep}
        self.n_batch = engine.n_batch  # an image's embeddings are decoded in batches of this many
        self.engine, self.stats, self.seq = engine, stats, seq
        self.pending = list(tokens[keep:])
        self.position = keep  # tokens the sequence holds
        self.milestones = {n: f for n, f in (milestones or {}).items() if n > keep}
        self.budget = min(sampling.max_tokens, n_ctx - len(tokens)) if sampling else 0
        self.sampler = None
        if sampling is not None:
            eog = engine.eog_tokens() if sampling.ignore_eos else ()
            self.sampler = SeqSampler(sampling, engine.llm.n_vocab(), eog)
        self.last: int | None = None  # the sampled token still to be evaluated
        self.done = not self.pending and sampling is None and not self.probe
        stats.prompt_tokens, stats.reused_tokens = len(tokens), keep
        stats.image_tokens = sum(span.n_tokens for span in media.values())

    @property
    def prefilling(self) -> bool:
        """True while prompt tokens are still to be evaluated."""
        return bool(self.pending)

    def take(self, limit: int) -> list[int]:
        """The tokens this sequence puts into the next batch: up to ``limit`` prompt tokens (stopping
        at the next milestone), or the last sampled token.

        Args:
            limit: most tokens to take, >= 1.
        """
        if not self.pending:
            return [self.last] if self.last is not None else []
        while self.position in self.media:  # an image starts here: it is evaluated on its own, now
            self._evaluate_media(self.media.pop(self.position))
            if not self.pending:
                return []
        bounds = [n for n in self.milestones if n > self.position] + [n for n in self.media if n > self.position]
        upto = min([limit] + [n - self.position for n in bounds])
        chunk, self.pending = self.pending[:upto], self.pending[upto:]
        return chunk

    def _evaluate_media(self, span: MediaSpan) -> None:
        """Evaluate one image into the sequence (at ``position``), record its placeholders, run a milestone
        it reaches; the caller holds the engine lock."""
        self.stats.image_encode_s += span.evaluate(self.seq, self.position, self.n_batch)
        placeholders, self.pending = self.pending[:span.n_tokens], self.pending[span.n_tokens:]
        self.engine.hold(self.seq, placeholders)
        self.position += span.n_tokens
        callback = self.milestones.pop(self.position, None)
        if callback is not None:
            callback()
        if not self.pending and self.sampler is None:
            self.done = True

    @property
    def wants_logits(self) -> bool:
        """True when the tokens just taken end where a token must be sampled (or a probe's groups read)."""
        return (self.sampler is not None or bool(self.probe)) and not self.pending

    def evaluated(self, n: int, output: int | None) -> int | None:
        """Account for ``n`` tokens of this sequence evaluated by the last ``llama_decode``, run the
        milestone reached, and sample when the prompt is done.

        Args:
            n: tokens of this sequence in that batch.
            output: the batch position of its logits (None when none were requested).

        Returns:
            The new answer token, or None (still prefilling, or finished: ``done`` says which;
            ``stats.stop_reason`` says why).
        """
        self.position += n
        self.last = None
        callback = self.milestones.pop(self.position, None)
        if callback is not None:
            callback()
        if self.pending:
            return None
        if self.sampler is None:
            if self.probe:
                self.stats.probe = group_logprobs(self.engine.ctx, output, self.engine.llm.n_vocab(), self.probe)
            self.done = True
            return None
        token = self.sampler.sample(self.engine.ctx, output)
        stats = self.stats
        if stats.first_token_at is None:
            stats.first_token_at = time.perf_counter()
        if self.engine.is_eog(token):
            stats.stop_reason, self.done = "eos", True
            return None
        stats.completion_tokens += 1
        if stats.completion_tokens >= self.budget:
            stats.stop_reason, self.done = "length", True
        else:
            self.last = token
        return token

    def close(self) -> None:
        """Free the sampler and stamp ``finished_at``."""
        if self.sampler is not None:
            self.sampler.close()
        self.stats.finished_at = time.perf_counter()
        self.done = True


class TokenText:
    """Turns answer tokens into text pieces, joining multi-byte UTF-8 characters split across
    tokens (invalid UTF-8 becomes U+FFFD).

    Args:
        engine: the loaded engine (its vocab-only twin detokenizes without the lock).
    """

    def __init__(self, engine: SequenceHost):
        self.engine = engine
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token: int) -> str:
        """The text this token completes ("" when it ends inside a character)."""
        return self._decoder.decode(self.engine.token_bytes(token))

    def flush(self) -> str:
        """What is left at the end of the answer."""
        return self._decoder.decode(b"", final=True)
