"""The one llama.cpp model of the process: load/unload, tokenize, chat template, sequences and
their KV state, batched decode, streaming.

The context holds ``n_seq_max`` sequences side by side, each with its own ``n_ctx`` tokens of KV
cache; the engine records which token ids each one holds. llama.cpp contexts are not
thread-safe, so every method that touches the ``Llama`` object must run under ``Engine.lock``
(the batch scheduler takes it for one decode step at a time; loading takes it for the load).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from backend.inference.loader import LoadParams, ModelLoadError, OpenedModel, open_model, precheck
from backend.inference.preflight import Preflight, PreflightResult
from backend.inference.sequence import SeqRun, TokenText
from backend.inference.types import EngineError, Interrupted, NoModelLoaded, Sampling, StreamStats

__all__ = ["Engine", "EngineError", "Interrupted", "LoadParams", "NoModelLoaded", "Sampling", "StreamStats"]

log = logging.getLogger(__name__)


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

    def __enter__(self) -> EngineLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Engine:
    """Owner of the single ``llama_cpp.Llama``.

    Attributes:
        lock: re-entrant lock serializing every use of the model (``EngineLock``).
        llm: the loaded model or None.
        model_path: the loaded GGUF.
        params: settings it was loaded with (``n_ctx`` as capped).
        load_seconds: wall time of the last load, seconds.
        loaded_at: Unix time of the last load.
        generation: bumped when a load brings another file (or follows an unload); a turn
            tokenized under one generation must not run on another.
        preflight: runs each new file in a child process before it is loaded (None: no preflight).
        last_preflight: the loaded model's preflight result (None without one).

    Args:
        preflight: see the attribute.
    """

    def __init__(self, preflight: Preflight | None = None):
        self.preflight = preflight
        self.last_preflight: PreflightResult | None = None
        self.lock = EngineLock()
        self.llm: llama_cpp.Llama | None = None
        self.model_path: Path | None = None
        self.params: LoadParams | None = None
        self.load_seconds: float | None = None
        self.loaded_at: float | None = None
        self.generation = 0  # see the class docstring
        self.seq_owners: list[str | None] = []  # per sequence: whose tokens it holds (``claim``)
        self._formatter: Jinja2ChatFormatter | None = None
        self._vocab: llama_cpp.Llama | None = None  # vocab-only twin: tokenizes without the lock
        self._batch: llama_cpp.llama_batch | None = None  # n_batch tokens, reused by every decode
        self._seq_tokens: list[list[int]] = []  # per sequence: the token ids its KV cells hold

    # lifecycle ---------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """True when a model is loaded."""
        return self.llm is not None

    def load(self, path: Path, params: LoadParams) -> None:
        """Load a GGUF in place of the current model, which is closed first so both are never in memory.

        The file is checked from its header first (``loader.precheck``), then run in a child
        process (``Preflight``); a file that fails either leaves the current model untouched. If
        llama.cpp then refuses it, the previous model is reopened with its settings, so a failed
        load never leaves the app without one.

        Args:
            path: the .gguf file.
            params: llama.cpp settings; ``n_ctx`` is capped at the model's training context.

        Raises:
            EngineError: the file is missing, not a readable GGUF, has no chat template, is too
                large for memory, crashed llama.cpp in the preflight, or llama.cpp refused it (the
                previous model serves on).
        """
        path = Path(path)
        current = self.model_path
        freed = current.stat().st_size if current and current.exists() else 0
        try:
            _, params = precheck(path, params, freed)
        except ModelLoadError as exc:
            raise EngineError(str(exc)) from exc
        params, checked = self._preflight(path, params)  # outside the lock: chats go on meanwhile
        with self.lock:
            previous = (self.model_path, self.params) if self.loaded else None
            self.unload()
            start = time.perf_counter()
            try:
                self._install(open_model(path, params), path)
            except ModelLoadError as exc:
                if previous is not None:
                    log.warning("reopening %s after the failed load of %s", previous[0].name, path.name)
                    self._install(open_model(*previous), previous[0])
                raise EngineError(str(exc)) from exc
            self.last_preflight = checked
            if previous is None or previous[0] != path:  # a restart of the same file keeps token ids valid
                self.generation += 1
            self.load_seconds = time.perf_counter() - start
            self.loaded_at = time.time()
            log.info("loaded %s in %.2f s (n_ctx=%d)", path.name, self.load_seconds, params.n_ctx)

    def _preflight(self, path: Path, params: LoadParams) -> tuple[LoadParams, PreflightResult | None]:
        """Run the preflight (when configured): the settings to load with and its result.

        Raises:
            EngineError: the file crashed llama.cpp with every setting tried.
        """
        if self.preflight is None:
            return params, None
        result = self.preflight.check(path, params)
        if result.crashed:
            raise EngineError(result.message)
        return dataclasses.replace(params, use_extra_bufts=result.use_extra_bufts), result

    def _install(self, opened: OpenedModel, path: Path) -> None:
        self.llm, self._vocab, self._formatter = opened.llm, opened.vocab, opened.formatter
        self.model_path, self.params = path, opened.params
        self._seq_tokens = [[] for _ in range(opened.params.n_seq_max)]
        self.seq_owners = [None] * opened.params.n_seq_max
        self._batch = llama_cpp.llama_batch_init(opened.params.n_batch, 0, 1)

    def unload(self) -> None:
        """Free the model and its context (no-op when none is loaded)."""
        with self.lock:
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
            for model in (self.llm, self._vocab):
                if model is not None:
                    model.close()
            self.llm, self._vocab, self.model_path, self._formatter = None, None, None, None
            self._batch, self._seq_tokens = None, []

    def _require(self) -> llama_cpp.Llama:
        if self.llm is None:
            raise NoModelLoaded()
        return self.llm

    # text <-> tokens ---------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        """Context window of one sequence, tokens (``llama_n_ctx_seq``: what each chat gets)."""
        return int(llama_cpp.llama_n_ctx_seq(self._require().ctx))

    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        """Tokenize text, parsing special tokens such as ``<|im_start|>``.

        Uses a vocab-only copy of the model, so it needs no lock and never waits for a generation.

        Args:
            text: the text.
            add_bos: prepend BOS when the model asks for one (``tokenizer.ggml.add_bos_token``).

        Returns:
            Token ids.
        """
        vocab = self._vocab
        if vocab is None:
            raise NoModelLoaded()
        want_bos = add_bos and vocab.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
        return vocab.tokenize(text.encode("utf-8"), add_bos=want_bos, special=True)

    def count_tokens(self, text: str) -> int | None:
        """Tokens the loaded model makes of ``text`` (special tokens parsed), or None with no model."""
        return len(self.tokenize(text)) if self.loaded else None

    def render(self, messages: list[dict[str, str]], **template_kwargs) -> str:
        """Render messages with the model's own chat template, generation prompt appended.

        Args:
            messages: ``{"role", "content"}`` dicts.
            template_kwargs: extra template variables (e.g. ``enable_thinking``).

        Returns:
            The prompt text.
        """
        self._require()
        return self._formatter(messages=messages, **template_kwargs).prompt

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one generated token (its UTF-8 may be cut mid-character)."""
        vocab = self._vocab
        if vocab is None:
            raise NoModelLoaded()
        return vocab.detokenize([token])

    def detokenize(self, tokens: list[int]) -> str:
        """The text of generated token ids (invalid UTF-8 becomes U+FFFD, as in ``stream``)."""
        vocab = self._vocab
        if vocab is None:
            raise NoModelLoaded()
        return vocab.detokenize(tokens).decode("utf-8", errors="replace")

    @property
    def has_thinking_switch(self) -> bool:
        """True when the chat template knows Qwen3's thinking switch (``enable_thinking``)."""
        return "enable_thinking" in (self._require().metadata.get("tokenizer.chat_template") or "")

    @property
    def metadata(self) -> dict:
        """The loaded GGUF's metadata key/values (strings, as llama.cpp reports them)."""
        return dict(self._require().metadata)

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ``<|im_end|>``...)."""
        llm = self._require()
        return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))

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
        if n > self.params.n_batch:
            raise EngineError(f"A batch of {n} tokens is more than n_batch {self.params.n_batch}.")
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise EngineError(f"llama.cpp could not evaluate the batch (llama_decode returned {rc}).")
        for seq, tokens, _ in work:
            self._seq_tokens[seq].extend(tokens)
        return outputs

    def prefill(self, tokens: list[int], should_stop: Callable[[], bool] | None = None,
                chunk_tokens: int | None = None, seq: int = 0) -> int:
        """Make sequence ``seq`` hold exactly ``tokens``, reusing any matching prefix already there.

        Args:
            tokens: the token sequence the sequence must hold afterwards.
            should_stop: checked between chunks; when it returns True the prefill stops.
            chunk_tokens: tokens evaluated between checks (default and most: ``n_batch``).
            seq: the sequence.

        Returns:
            Number of tokens actually evaluated.

        Raises:
            Interrupted: ``should_stop`` returned True before the end; the sequence then holds a
                shorter prefix of ``tokens``.
        """
        run = SeqRun(self, seq, tokens, None, StreamStats())
        keep, step = run.position, min(chunk_tokens or self.n_batch, self.n_batch)
        try:
            while run.prefilling:
                if should_stop is not None and should_stop():
                    raise Interrupted(f"prefill stopped after {run.position - keep} of {len(tokens) - keep} tokens")
                chunk = run.take(step)
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
    def stream(self, tokens: list[int], sampling: Sampling, stats: StreamStats, seq: int = 0) -> Iterator[str]:
        """Generate from a prompt in sequence ``seq`` alone (the serial path; ``Scheduler`` batches
        several), reusing the longest prefix the sequence already holds.

        Caller must hold ``lock`` for the whole iteration.

        Args:
            tokens: prompt token ids.
            sampling: sampling settings.
            stats: filled in as generation proceeds (see ``StreamStats``).
            seq: the sequence.

        Yields:
            Text pieces; multi-byte UTF-8 characters split across tokens are joined first.

        Raises:
            EngineError: the prompt does not fit ``n_ctx``, or llama.cpp failed.
        """
        run, text = SeqRun(self, seq, tokens, sampling, stats), TokenText(self)
        try:
            while not run.done:
                chunk = run.take(self.n_batch)
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

    def _preflight_note(self) -> str:
        """One line on the loaded model's preflight."""
        result = self.last_preflight
        if self.preflight is None or result is None:
            return "off"
        if result.message:
            return result.message
        return "passed (remembered)" if result.remembered else f"passed in {result.seconds:.1f} s"

    def status(self) -> dict:
        """Model facts for the status panel: path, settings, offload support, layers on the GPU
        (``offloaded_layers``: the repeating layers ``n_gpu_layers`` asks for, 0 on a CPU-only build)."""
        info = {
            "loaded": self.loaded,
            "model": self.model_path.name if self.model_path else None,
            "model_path": str(self.model_path) if self.model_path else None,
            "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
            "llama_cpp_version": llama_cpp.__version__,
            "load_seconds": self.load_seconds,
        }
        if self.llm is not None and self.params is not None:
            meta = self.llm.metadata
            n_layers = int(meta.get(f"{meta.get('general.architecture')}.block_count", 0))
            wanted = n_layers if self.params.n_gpu_layers < 0 else min(self.params.n_gpu_layers, n_layers)
            offloaded = wanted if info["gpu_offload_supported"] else 0  # CPU builds offload nothing
            info.update(n_ctx=self.n_ctx, n_seq_max=self.n_seq_max, n_gpu_layers=self.params.n_gpu_layers,
                        n_batch=self.params.n_batch, flash_attn=self.params.flash_attn,
                        type_k=self.params.type_k, type_v=self.params.type_v,
                        use_mmap=self.params.use_mmap, use_mlock=self.params.use_mlock, loaded_at=self.loaded_at,
                        n_layers=n_layers, offloaded_layers=offloaded, n_threads=self.params.n_threads,
                        n_threads_batch=self.params.n_threads_batch, use_extra_bufts=self.params.use_extra_bufts,
                        preflight=self._preflight_note(),
                        parameters=int(llama_cpp.llama_model_n_params(self.llm.model)))
        return info
