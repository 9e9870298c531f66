"""The one llama.cpp model of the process: load/unload, tokenize, chat template, sequences and
their KV state, batched decode, streaming.

The context holds ``n_seq_max`` sequences side by side, each with its own ``n_ctx`` tokens of KV
cache; the engine records which token ids each one holds (those methods are in
``backend.inference.sequences``, which ``Engine`` inherits). llama.cpp contexts are not
thread-safe, so every method that touches the ``Llama`` object must run under ``Engine.lock``
(the batch scheduler takes it for one decode step at a time; loading takes it for the load).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from backend.inference.loader import LoadParams, ModelLoadError, OpenedModel, formatter_for, open_model, precheck
from backend.inference.preflight import Preflight, PreflightResult
from backend.inference.registry import describe
from backend.inference.sequences import EngineLock, Sequences
from backend.inference.types import EngineError, Interrupted, NoModelLoaded, Sampling, StreamStats
from backend.inference.vision import Projector

__all__ = ["Engine", "EngineError", "Interrupted", "LoadParams", "NoModelLoaded", "Sampling", "StreamStats"]

log = logging.getLogger(__name__)


class Engine(Sequences):
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
        projector: the vision projector attached to the loaded model (``attach_projector``), or None.
        vocab_only: a model's vocabulary and chat template only (``load_vocab``): it tokenizes and lays out
            prompts for llama-server replicas that do the computing; ``loaded`` is False.

    Args:
        preflight: see the attribute.
    """

    def __init__(self, preflight: Preflight | None = None):
        self.preflight = preflight
        self.last_preflight: PreflightResult | None = None
        self.lock = EngineLock()
        self.llm: llama_cpp.Llama | None = None
        self._eog: tuple[int, ...] | None = None  # eog_tokens(), found once per loaded model
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
        self.projector: Projector | None = None
        self.vocab_only = False

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

    def load_vocab(self, path: Path, n_ctx: int) -> None:
        """Load only a model's vocabulary and chat template, in place of anything loaded: prompts are laid out
        and tokenized here, token for token as a local load would, and computed elsewhere (llama-server replicas
        of the same file). Nothing is computed, so there is no preflight and no KV memory.

        Args:
            path: the GGUF file (the one the replicas serve).
            n_ctx: the context window the prompts are planned for (a replica's slot), tokens.

        Raises:
            EngineError: the file is missing, not a readable GGUF or has no chat template.
        """
        path = Path(path)
        try:
            _, params = precheck(path, LoadParams(n_ctx=n_ctx, n_seq_max=1))
            vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        except (ModelLoadError, ValueError, RuntimeError, OSError) as exc:
            raise EngineError(str(exc) if isinstance(exc, ModelLoadError) else
                              f"Model file {path.name} could not be read (not a valid GGUF); choose another file.") from exc
        with self.lock:
            self.unload()
            self._vocab, self.model_path, self.params, self.vocab_only = vocab, path, params, True
            self._formatter = formatter_for(vocab)
            self.generation += 1
            self.loaded_at = time.time()
        log.info("loaded the vocabulary of %s (prompts for remote replicas, n_ctx=%d)", path.name, params.n_ctx)

    @property
    def can_tokenize(self) -> bool:
        """True when a model, or its vocabulary alone (``vocab_only``), is loaded."""
        return self._vocab is not None

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
        self.model_path, self.params, self._eog = path, opened.params, None
        self._seq_tokens = [[] for _ in range(opened.params.n_seq_max)]
        self.seq_owners = [None] * opened.params.n_seq_max
        self._batch = llama_cpp.llama_batch_init(opened.params.n_batch, 0, 1)

    def attach_projector(self, path: Path) -> Projector:
        """Attach a vision projector (``mmproj`` GGUF) to the loaded model, in place of any other.

        Args:
            path: the projector file made for this model.

        Returns:
            The projector (also ``self.projector``); it goes with the model at the next load or unload.

        Raises:
            NoModelLoaded: no model is loaded.
            EngineError: libmtmd refused the file.
        """
        with self.lock:
            llm = self._require()
            self.detach_projector()
            self.projector = Projector(llm, path, self.params.n_threads or 1, use_gpu=self.params.n_gpu_layers != 0)
            log.info("attached vision projector %s", Path(path).name)
            return self.projector

    def detach_projector(self) -> None:
        """Free the vision projector, if one is attached."""
        with self.lock:
            if self.projector is not None:
                self.projector.close()
                self.projector = None

    def unload(self) -> None:
        """Free the model, its context and its vision projector (no-op when none is loaded)."""
        with self.lock:
            self.detach_projector()
            if self._batch is not None:
                llama_cpp.llama_batch_free(self._batch)
            for model in (self.llm, self._vocab):
                if model is not None:
                    model.close()
            self.llm, self._vocab, self.model_path, self._formatter, self._eog = None, None, None, None, None
            self._batch, self._seq_tokens, self.vocab_only = None, [], False

    def _require(self) -> llama_cpp.Llama:
        if self.llm is None:
            raise NoModelLoaded()
        return self.llm

    @contextlib.contextmanager
    def plain_llama(self) -> Iterator[llama_cpp.Llama]:
        """The loaded ``Llama``, to drive through llama-cpp-python's own API (``generate``,
        ``create_chat_completion``) as a baseline beside the engine, under the lock.

        ``Llama`` keeps its own record of the tokens in sequence 0 and reuses the longest match on the
        next call; its ``eval`` also drops every sequence's cells past that match. Neither knows what
        the engine put there, so every sequence is emptied (and ``Llama``'s record reset) before and
        after: the baseline evaluates its whole prompt, and the engine trusts nothing it overwrote.

        Yields:
            The ``llama_cpp.Llama`` of the loaded model.

        Raises:
            NoModelLoaded: no model is loaded.
        """
        with self.lock:
            llm = self._require()
            self.clear_context()
            llm.reset()
            try:
                yield llm
            finally:
                self.clear_context()
                llm.reset()

    # text <-> tokens ---------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        """Context window of one sequence, tokens (``llama_n_ctx_seq``: what each chat gets; with ``vocab_only``,
        the window prompts are planned for)."""
        if self.vocab_only and self.params is not None:
            return self.params.n_ctx
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
        if self._formatter is None:
            raise NoModelLoaded()
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
        return "enable_thinking" in (self.metadata.get("tokenizer.chat_template") or "")

    @property
    def n_params(self) -> int:
        """Parameter count of the loaded model (``llama_model_n_params``; with ``vocab_only``, from its header)."""
        if self.vocab_only and self._vocab is not None:
            return int(llama_cpp.llama_model_n_params(self._vocab.model)) or describe(self.model_path).parameters
        return int(llama_cpp.llama_model_n_params(self._require().model))

    @property
    def metadata(self) -> dict:
        """The loaded GGUF's metadata key/values (strings, as llama.cpp reports them)."""
        if self.vocab_only and self._vocab is not None:
            return dict(self._vocab.metadata)
        return dict(self._require().metadata)

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ``<|im_end|>``...)."""
        llm = self._require()
        return bool(llama_cpp.llama_vocab_is_eog(llama_cpp.llama_model_get_vocab(llm.model), token))

    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token id of the loaded vocabulary (one pass over it, ~0.1 s for 150k
        tokens, on the first call after a load; remembered until the model changes)."""
        if self._eog is None:
            vocab = llama_cpp.llama_model_get_vocab(self._require().model)
            self._eog = tuple(t for t in range(llama_cpp.llama_vocab_n_tokens(vocab))
                              if llama_cpp.llama_vocab_is_eog(vocab, t))
        return self._eog

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
        (``offloaded_layers``: the repeating layers ``n_gpu_layers`` asks for, 0 on a CPU-only build), and the
        vision projector's file name (``projector``; None for a text-only model)."""
        info = {
            "loaded": self.loaded,
            "vocab_only": self.vocab_only,
            "model": self.model_path.name if self.model_path else None,
            "model_path": str(self.model_path) if self.model_path else None,
            "gpu_offload_supported": bool(llama_cpp.llama_supports_gpu_offload()),
            "llama_cpp_version": llama_cpp.__version__,
            "load_seconds": self.load_seconds,
            "projector": self.projector.path.name if self.projector is not None else None,
        }
        if self.llm is not None and self.params is not None:
            meta = self.llm.metadata
            n_layers = int(meta.get(f"{meta.get('general.architecture')}.block_count", 0))
            wanted = n_layers if self.params.n_gpu_layers < 0 else min(self.params.n_gpu_layers, n_layers)
            offloaded = wanted if info["gpu_offload_supported"] else 0  # CPU builds offload nothing
            info.update(n_ctx=self.n_ctx, n_seq_max=self.n_seq_max, n_gpu_layers=self.params.n_gpu_layers,
                        n_batch=self.params.n_batch, n_ubatch=min(self.params.n_ubatch, self.params.n_batch),
                        flash_attn=self.params.flash_attn,
                        type_k=self.params.type_k, type_v=self.params.type_v,
                        use_mmap=self.params.use_mmap, use_mlock=self.params.use_mlock, loaded_at=self.loaded_at,
                        n_layers=n_layers, offloaded_layers=offloaded, n_threads=self.params.n_threads,
                        n_threads_batch=self.params.n_threads_batch, use_extra_bufts=self.params.use_extra_bufts,
                        preflight=self._preflight_note(),
                        parameters=self.n_params)
        return info
