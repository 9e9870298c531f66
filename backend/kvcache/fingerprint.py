"""What a saved KV state depends on, and how entries are named: the model file's identity, the
fingerprint of the loaded model and its settings, cache keys, and KV bytes per token."""

from __future__ import annotations

import hashlib
import json

import llama_cpp
import numpy as np

from backend.inference import Engine, model_identity


def fingerprint(engine: Engine) -> dict:
    """Everything a saved KV state depends on, for the loaded model.

    Returns:
        A JSON-able dict: model identity, ``n_ctx``, ``type_k``/``type_v``, ``flash_attn``,
        llama-cpp-python version and llama.cpp's system info (build features).
    """
    p = engine.params
    return {
        "model_sha256": model_identity(engine.model_path),
        "n_ctx": engine.n_ctx,
        "type_k": p.type_k,
        "type_v": p.type_v,
        "flash_attn": p.flash_attn,
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_system": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }


# Bytes per element of the KV cache types: f16 is 2 bytes; q8_0 stores blocks of 32 int8 values
# plus one f16 scale, 34 bytes per 32 values (ggml-common.h, block_q8_0).
KV_TYPE_BYTES = {"f16": 2.0, "q8_0": 34 / 32}


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
