"""What a saved KV state depends on, and how entries are named: the model file's identity, the
fingerprint of the loaded model and its settings, cache keys, and KV bytes per token."""

from __future__ import annotations

import hashlib
import json

import llama_cpp
import numpy as np

from backend.inference import Engine, model_identity
from backend.inference.loader import KV_TYPE_BYTES, kv_bytes_per_token

__all__ = ["KV_TYPE_BYTES", "PORTABLE", "entry_key", "fingerprint", "kv_bytes_per_token", "portable", "tokens_sha256"]

# What a KV state moving between llama.cpp engines (the in-process one, llama-server replicas) depends on: the
# model file, llama.cpp's sequence-state version, flash attention (V is stored transposed without it), the KV types
# and the KV stream count (llama.cpp refuses any other: "incompatible V transposition", "n_stream mismatch").
PORTABLE = ("model_sha256", "state_version", "flash_attn", "type_k", "type_v", "n_stream")


def portable(fp: dict) -> dict:
    """The part of a fingerprint (``fingerprint``, or a replica's) a state moving between engines depends on."""
    return {k: fp.get(k) for k in PORTABLE}


def fingerprint(engine: Engine) -> dict:
    """Everything a saved KV state depends on, for the loaded model.

    Returns:
        A JSON-able dict: model identity, ``n_ctx``, ``type_k``/``type_v``, ``flash_attn``, llama.cpp's
        sequence-state version, the KV streams (``n_stream``: one per sequence, ``n_seq_max``, as the engine loads
        without a unified KV; llama.cpp refuses a state of another stream count), llama-cpp-python version and
        llama.cpp's system info (build features). ``slots.portable`` is the part a llama-server replica shares.
    """
    p = engine.params
    return {
        "model_sha256": model_identity(engine.model_path),
        "n_ctx": engine.n_ctx,
        "type_k": p.type_k,
        "type_v": p.type_v,
        "flash_attn": p.flash_attn,
        "state_version": llama_cpp.LLAMA_STATE_SEQ_VERSION,
        "n_stream": engine.n_seq_max,
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_system": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


def tokens_sha256(tokens: list[int]) -> str:
    """SHA-256 of token ids as little-endian int32."""
    return hashlib.sha256(np.asarray(tokens, dtype="<i4").tobytes()).hexdigest()


def entry_key(fp: dict, tokens: list[int], owner: str = "") -> str:
    """Cache key: SHA-256 of the canonical fingerprint JSON, the token hash and the owner, 32 hex chars.

    The owner is part of the key so two users with the same document text never share an entry: one user's
    cache hit could otherwise tell them that someone else has that text.
    """
    blob = json.dumps(fp, sort_keys=True).encode() + tokens_sha256(tokens).encode() + owner.encode()
    return hashlib.sha256(blob).hexdigest()[:32]
