"""Opening a GGUF with llama.cpp: the checks made before the loaded model is touched, then the
``Llama`` object, its vocab-only twin and its chat-template formatter.

``Engine.load`` runs ``precheck`` first (so a file that cannot work leaves the current model
alone), then the preflight in a child process (``backend.inference.preflight``: a file that
crashes llama.cpp ends the child, not the app), frees the current model, and only then calls
``open_model`` (so two models never share memory); if llama.cpp still fails, it reopens the
previous model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import psutil
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from backend.inference.registry import ModelInfo, describe
from backend.storage.disk import size_text

log = logging.getLogger(__name__)

GGML_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # ggml_type enum values (ggml.h)


class ModelLoadError(RuntimeError):
    """A model cannot be loaded; ``str(err)`` is one sentence for the user."""


@dataclass(frozen=True)
class LoadParams:
    """llama.cpp settings a model is loaded with; names follow ``llama_cpp.Llama`` and llama.cpp.

    ``n_threads`` (decode) and ``n_threads_batch`` (prefill) default to every core
    (``default_threads``): llama-cpp-python's own default for decode is half of them.
    ``use_extra_bufts`` is llama.cpp's ``llama_model_params.use_extra_bufts``: extra CPU buffer
    types for weights (AMX, repacked layouts); False keeps weights in plain CPU buffers.
    ``n_seq_max`` is llama.cpp's (llama-server's ``--parallel``): sequences decoded together in
    one context, each with its own ``n_ctx`` tokens of KV cache (``kv_unified`` off, so a
    sequence's attention reads its own cells only); 0 picks it from memory (``auto_n_seq_max``).
    """

    n_ctx: int = 8192
    n_gpu_layers: int = -1
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int | None = None
    n_threads_batch: int | None = None
    flash_attn: bool = False
    type_k: str = "f16"
    type_v: str = "f16"
    use_mmap: bool = True
    use_mlock: bool = False
    use_extra_bufts: bool = True
    n_seq_max: int = 1


def default_threads() -> int:
    """Threads for decode and prefill when none are configured: every core the process may use.

    On this project's 2-core machine, SmolLM2-135M Q4_1 decodes at 52-65 tok/s on one thread
    (llama-cpp-python's default, ``cpu_count // 2``) and 87-99 tok/s on two (``benchmarks/threads.py``).
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_params_lock = threading.Lock()


@contextlib.contextmanager
def _default_params(model: dict, context: dict):
    """Set fields of the ``llama_model_params`` and ``llama_context_params`` that ``llama_cpp.Llama``
    starts from, for one load.

    llama-cpp-python's ``Llama`` has no argument for some parameters (``use_extra_bufts``,
    ``n_seq_max``, ``kv_unified``); it builds them from ``llama_model_default_params()`` and
    ``llama_context_default_params()``, so those calls are wrapped.
    """
    module = llama_cpp.llama_cpp
    originals = {"llama_model_default_params": (module.llama_model_default_params, model),
                 "llama_context_default_params": (module.llama_context_default_params, context)}

    def patch(original, fields):
        def patched():
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params
        return patched

    with _params_lock:
        for name, (original, fields) in originals.items():
            setattr(module, name, patch(original, fields))
        try:
            yield
        finally:
            for name, (original, _) in originals.items():
                setattr(module, name, original)


# Bytes per element of the KV cache types: f16 is 2 bytes; q8_0 stores blocks of 32 int8 values
# plus one f16 scale, 34 bytes per 32 values (ggml-common.h, block_q8_0); q4_0 blocks of 32 4-bit
# values plus one f16 scale, 18 bytes per 32 values (block_q4_0).
KV_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


def kv_bytes_per_token(metadata: dict, type_k: str, type_v: str) -> float:
    """KV-cache bytes one token takes, from a GGUF's metadata (standard attention layers).

    Args:
        metadata: GGUF key/values as llama-cpp-python reports them (``Llama.metadata``).
        type_k / type_v: KV cache types (``KV_TYPE_BYTES``).

    Returns:
        ``n_layer * n_head_kv * (key_length * bytes(type_k) + value_length * bytes(type_v))``;
        0.0 when the metadata lacks the shapes. The saved state adds a small header per layer
        (benchmarks/ttft.py measures 112 KB/token f16 and 59.5 KB/token q8_0 for Qwen3-0.6B,
        as this gives).
    """
    arch = metadata.get("general.architecture", "")

    def num(key: str, default: int = 0) -> int:
        return int(metadata.get(f"{arch}.{key}", default) or default)

    n_head = num("attention.head_count")
    n_head_kv = num("attention.head_count_kv", n_head)
    head_dim = num("embedding_length") // n_head if n_head else 0
    k_dim, v_dim = num("attention.key_length", head_dim), num("attention.value_length", head_dim)
    return num("block_count") * n_head_kv * (k_dim * KV_TYPE_BYTES[type_k] + v_dim * KV_TYPE_BYTES[type_v])


# Most sequences ``auto_n_seq_max`` picks: llama-server's default ``--parallel`` is 4. On two CPU cores
# four sequences reach 1.57x one sequence's decode tok/s on the bench model (benchmarks/concurrency.py);
# more add memory for little (1.58x with eight).
MAX_AUTO_SEQ = 4
# Share of the free memory the KV caches of all sequences may take when ``n_seq_max`` is auto.
AUTO_KV_MEMORY_SHARE = 0.25


def auto_n_seq_max(metadata: dict, params: LoadParams, available_bytes: int) -> int:
    """Sequences to allocate when ``n_seq_max`` is 0: as many as fit, up to ``MAX_AUTO_SEQ``, with
    every sequence's KV cache (``n_ctx`` tokens each) in ``AUTO_KV_MEMORY_SHARE`` of free memory.

    Args:
        metadata: the GGUF's key/values.
        params: the load settings (``n_ctx``, ``type_k``, ``type_v``).
        available_bytes: free memory, bytes.

    Returns:
        1 to ``MAX_AUTO_SEQ``.
    """
    per_seq = kv_bytes_per_token(metadata, params.type_k, params.type_v) * params.n_ctx
    if per_seq <= 0:
        return 1
    return max(1, min(MAX_AUTO_SEQ, int(available_bytes * AUTO_KV_MEMORY_SHARE // per_seq)))


@dataclass(frozen=True)
class OpenedModel:
    """A model ready to serve: the context, a vocab-only copy for lock-free tokenizing, the chat
    template, and the settings actually used (``n_ctx`` capped at the model's)."""

    llm: llama_cpp.Llama
    vocab: llama_cpp.Llama
    formatter: Jinja2ChatFormatter
    params: LoadParams


def precheck(path: Path, params: LoadParams, freed_bytes: int = 0) -> tuple[ModelInfo, LoadParams]:
    """Check a GGUF from its header and the machine's memory, without loading it.

    Args:
        path: the file.
        params: requested settings.
        freed_bytes: memory the current model gives back when it is closed, bytes.

    Returns:
        The file's ``ModelInfo`` and the settings to use (``n_ctx`` capped at its context length).

    Raises:
        ModelLoadError: missing, not a readable GGUF, no chat template, or larger than the
            available memory (``psutil.virtual_memory().available`` plus ``freed_bytes``).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist; check the path or download a model.")
    info = describe(path)
    if info.error:
        raise ModelLoadError(f"Model file {path.name} cannot be used: {info.error}")
    available = psutil.virtual_memory().available + freed_bytes
    if info.size_bytes > available:
        raise ModelLoadError(f"Model {path.name} needs {size_text(info.size_bytes)} but only "
                             f"{size_text(available)} of memory is free; choose a smaller quantization.")
    if info.context_length and params.n_ctx > info.context_length:
        params = dataclasses.replace(params, n_ctx=info.context_length)
    return info, params


def open_model(path: Path, params: LoadParams) -> OpenedModel:
    """Create the ``Llama`` context, its vocab-only twin and the chat formatter.

    Raises:
        ModelLoadError: llama.cpp refused the file or the settings.
    """
    params = dataclasses.replace(params, n_threads=params.n_threads or default_threads(),
                                 n_threads_batch=params.n_threads_batch or default_threads())
    try:
        vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(f"Model file {path.name} could not be loaded (not a valid GGUF); choose another file.") from exc
    if params.n_seq_max <= 0:
        params = dataclasses.replace(params, n_seq_max=auto_n_seq_max(vocab.metadata, params,
                                                                      psutil.virtual_memory().available))
    try:
        with _default_params({"use_extra_bufts": params.use_extra_bufts},
                             {"n_seq_max": params.n_seq_max, "kv_unified": False}):
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=params.n_ctx * params.n_seq_max, n_gpu_layers=params.n_gpu_layers,
                n_batch=params.n_batch, n_ubatch=min(params.n_ubatch, params.n_batch), n_threads=params.n_threads,
                n_threads_batch=params.n_threads_batch, flash_attn=params.flash_attn,
                type_k=GGML_TYPES[params.type_k], type_v=GGML_TYPES[params.type_v],
                use_mmap=params.use_mmap, use_mlock=params.use_mlock, logits_all=False, verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        vocab.close()
        log.warning("failed to load %s: %s", path, exc)
        if params.type_k != "f16" or params.type_v != "f16" or params.flash_attn:
            raise ModelLoadError(
                f"Model {path.name} could not be loaded with type_k {params.type_k}, type_v {params.type_v} "
                f"and flash_attn {params.flash_attn} (this model or build may not support them, or it is "
                "too large for memory); try f16 without flash_attn.") from exc
        raise ModelLoadError(f"Model file {path.name} could not be loaded (not a valid GGUF, or too large "
                             "for memory); choose another file.") from exc
    try:
        formatter = formatter_for(vocab)
    except ModelLoadError:
        llm.close()
        vocab.close()
        raise
    return OpenedModel(llm, vocab, formatter, params)


def formatter_for(vocab: llama_cpp.Llama) -> Jinja2ChatFormatter:
    """The model's own chat template as a formatter (generation prompt appended), from its vocabulary's metadata.

    Raises:
        ModelLoadError: the model has no chat template.
    """
    template = vocab.metadata.get("tokenizer.chat_template")
    if not template:
        raise ModelLoadError(f"Model {Path(vocab.model_path).name} has no chat template; use an instruct/chat GGUF.")
    return Jinja2ChatFormatter(template=template, eos_token=_token_text(vocab, vocab.token_eos()),
                               bos_token=_token_text(vocab, vocab.token_bos()), add_generation_prompt=True)


def _token_text(vocab: llama_cpp.Llama, token: int) -> str:
    if token < 0:
        return ""
    return vocab.detokenize([token], special=True).decode("utf-8", errors="ignore")
