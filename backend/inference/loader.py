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

log = logging.getLogger(__name__)

GGML_TYPES = {"f16": 1, "q8_0": 8}  # ggml_type enum values (ggml.h)


class ModelLoadError(RuntimeError):
    """A model cannot be loaded; ``str(err)`` is one sentence for the user."""


@dataclass(frozen=True)
class LoadParams:
    """llama.cpp settings a model is loaded with; names follow ``llama_cpp.Llama`` and llama.cpp.

    ``n_threads`` (decode) and ``n_threads_batch`` (prefill) default to every core
    (``default_threads``): llama-cpp-python's own default for decode is half of them.
    ``use_extra_bufts`` is llama.cpp's ``llama_model_params.use_extra_bufts``: extra CPU buffer
    types for weights (AMX, repacked layouts); False keeps weights in plain CPU buffers.
    """

    n_ctx: int = 8192
    n_gpu_layers: int = -1
    n_batch: int = 512
    n_threads: int | None = None
    n_threads_batch: int | None = None
    flash_attn: bool = False
    type_k: str = "f16"
    type_v: str = "f16"
    use_mmap: bool = True
    use_mlock: bool = False
    use_extra_bufts: bool = True


def default_threads() -> int:
    """Threads for decode and prefill when none are configured: every core the process may use.

    On this project's 2-core machine, SmolLM2-135M Q4_1 decodes at 52-65 tok/s on one thread
    (llama-cpp-python's default, ``cpu_count // 2``) and 87-99 tok/s on two (``benchmarks/threads.py``).
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_params_lock = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields):
    """Set fields of the ``llama_model_params`` that ``llama_cpp.Llama`` starts from, for one load.

    llama-cpp-python's ``Llama`` has no argument for some model parameters (``use_extra_bufts``);
    it builds its parameters from ``llama_model_default_params()``, so that call is wrapped.
    """
    module = llama_cpp.llama_cpp
    original = module.llama_model_default_params

    def patched():
        params = original()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    with _params_lock:
        module.llama_model_default_params = patched
        try:
            yield
        finally:
            module.llama_model_default_params = original


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
        raise ModelLoadError(f"Model {path.name} needs {info.size_bytes / 2**30:.1f} GiB but only "
                             f"{available / 2**30:.1f} GiB of memory is free; choose a smaller quantization.")
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
        with _model_params(use_extra_bufts=params.use_extra_bufts):
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=params.n_ctx, n_gpu_layers=params.n_gpu_layers, n_batch=params.n_batch,
                n_ubatch=params.n_batch, n_threads=params.n_threads, n_threads_batch=params.n_threads_batch,
                flash_attn=params.flash_attn, type_k=GGML_TYPES[params.type_k], type_v=GGML_TYPES[params.type_v],
                use_mmap=params.use_mmap, use_mlock=params.use_mlock, logits_all=False, verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        log.warning("failed to load %s: %s", path, exc)
        if params.type_k != "f16" or params.type_v != "f16" or params.flash_attn:
            raise ModelLoadError(
                f"Model {path.name} could not be loaded with type_k {params.type_k}, type_v {params.type_v} "
                f"and flash_attn {params.flash_attn} (this model or build may not support them, or it is "
                "too large for memory); try f16 without flash_attn.") from exc
        raise ModelLoadError(f"Model file {path.name} could not be loaded (not a valid GGUF, or too large "
                             "for memory); choose another file.") from exc
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        llm.close()
        raise ModelLoadError(f"Model {path.name} has no chat template; use an instruct/chat GGUF.")
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    formatter = Jinja2ChatFormatter(template=template, eos_token=_token_text(vocab, llm.token_eos()),
                                    bos_token=_token_text(vocab, llm.token_bos()), add_generation_prompt=True)
    return OpenedModel(llm, vocab, formatter, params)


def _token_text(vocab: llama_cpp.Llama, token: int) -> str:
    if token < 0:
        return ""
    return vocab.detokenize([token], special=True).decode("utf-8", errors="ignore")
