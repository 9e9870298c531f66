"""Write a small, real GGUF model with random weights, for tests and benchmarks.

Usage::

    python models/make_synthetic.py OUT.gguf [--preset tiny|bench] [--seed N] [--crashing-vocab]

The file is a genuine llama.cpp model: a transformer with the named architecture, a
byte-level BPE tokenizer (GPT-2 style byte-to-unicode vocabulary with merges trained by
Hugging Face ``tokenizers`` on Python's own docstrings), ChatML special tokens and a ChatML
chat template. The weights are random, so generated text is meaningless, but every step of
the pipeline (tokenize, prefill, KV state save/restore, sampling, detokenize) is real.

Presets:

* ``tiny``: llama architecture, 2 layers, 64 hidden dims, 2,048-token vocabulary, f32.
  Loads in milliseconds and prefills thousands of tokens per second on one CPU core;
  used by every test.
* ``bench``: qwen3 architecture with the exact layer shapes and vocabulary size of
  Qwen3-0.6B (28 layers, hidden 1024, 16 query / 8 KV heads of 128 dims, FFN 3072,
  vocabulary 151,936, tied embeddings), weights in Q8_0 like ``Qwen3-0.6B-Q8_0.gguf``.
  Source of the shapes: the ``config.json`` of ``Qwen/Qwen3-0.6B`` on Hugging Face.
  Used by ``benchmarks/`` so timings match the recommended model's compute.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_DEFINED_TOKENS = ["<think>", "</think>"]


@dataclass(frozen=True)
class Preset:
    """Shapes of one synthetic model.

    Attributes mirror llama.cpp's GGUF keys: ``n_embd`` (hidden size), ``n_layer``,
    ``n_head`` / ``n_head_kv`` (attention heads), ``head_dim`` (per-head dims),
    ``n_ff`` (FFN inner size), ``n_vocab`` (total token count), ``n_merges_vocab``
    (vocabulary size the BPE trainer targets before padding), ``n_ctx_train`` (tokens).
    """

    arch: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_merges_vocab: int
    n_ctx_train: int
    rope_theta: float
    weight_type: gguf.GGMLQuantizationType
    tied_embeddings: bool


PRESETS = {
    "tiny": Preset(
        arch="llama", n_embd=64, n_layer=2, n_head=4, n_head_kv=2, head_dim=16, n_ff=128,
        n_vocab=2048, n_merges_vocab=2048, n_ctx_train=32768, rope_theta=10000.0,
        weight_type=gguf.GGMLQuantizationType.F32, tied_embeddings=False,
    ),
    "bench": Preset(
        arch="qwen3", n_embd=1024, n_layer=28, n_head=16, n_head_kv=8, head_dim=128, n_ff=3072,
        n_vocab=151936, n_merges_vocab=8192, n_ctx_train=40960, rope_theta=1_000_000.0,
        weight_type=gguf.GGMLQuantizationType.Q8_0, tied_embeddings=True,
    ),
}


def training_corpus() -> list[str]:
    """Return English-ish text to train BPE merges on: docstrings of the standard library.

    Returns:
        A list of docstrings (str), deterministic for a given Python installation.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts: list[str] = []
    for name in ["argparse", "json/__init__", "email/message", "http/client", "logging/__init__",
                 "pathlib", "subprocess", "textwrap", "typing", "unittest/case", "zipfile",
                 "collections/__init__", "datetime", "decimal", "difflib", "inspect"]:
        path = stdlib / f"{name}.py"
        if not path.exists():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    texts.append(doc)
    return texts


def build_vocab(preset: Preset, extra_tokens: tuple[str, ...] = ()) -> tuple[list[str], list[int], list[str]]:
    """Train a byte-level BPE and lay out the full vocabulary.

    Args:
        preset: the model shapes; ``n_merges_vocab`` bounds the trained part and
            ``n_vocab`` is the final size, reached with unreachable ``[padN]`` tokens.
        extra_tokens: more user-defined tokens after ``USER_DEFINED_TOKENS`` (a vision model's image markers).

    Returns:
        ``(tokens, token_types, merges)``: token strings in GPT-2 byte-to-unicode form,
        their ``gguf.TokenType`` values, and merges as ``"left right"`` strings.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    user_defined = USER_DEFINED_TOKENS + list(extra_tokens)
    n_special = len(SPECIAL_TOKENS) + len(user_defined)
    trainer = trainers.BpeTrainer(
        vocab_size=preset.n_merges_vocab - n_special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_corpus(), trainer=trainer)
    vocab = tokenizer.get_vocab()
    tokens = [tok for tok, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    merges = [" ".join(pair) if isinstance(pair, list) else pair
              for pair in json.loads(tokenizer.to_str())["model"]["merges"]]
    tokens += SPECIAL_TOKENS
    types += [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS)
    tokens += user_defined
    types += [gguf.TokenType.USER_DEFINED] * len(user_defined)
    pad = preset.n_vocab - len(tokens)
    if pad < 0:
        raise ValueError(f"trained vocabulary {len(tokens)} exceeds n_vocab {preset.n_vocab}")
    tokens += [f"[pad{i}]" for i in range(pad)]
    types += [gguf.TokenType.UNUSED] * pad
    return tokens, [int(t) for t in types], merges


def _matrix(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Random float32 weight matrix, numpy shape (rows, cols) = ggml ne (cols, rows)."""
    return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float32)


def _add_weight(writer: gguf.GGUFWriter, name: str, data: np.ndarray, qtype) -> None:
    """Add a 2-D weight, quantized to ``qtype`` (F32 stays as is)."""
    if qtype == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(name, data)
        return
    writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def _add_crashing_vocab(w: gguf.GGUFWriter, n_vocab: int) -> None:
    """A SentencePiece vocabulary with lowercase letters only and no byte-fallback tokens (``<0x41>``...).

    llama.cpp loads it, then aborts the whole process (``std::out_of_range`` from
    ``unordered_map::at`` in its byte fallback, uncaught across the C API) as soon as it tokenizes
    a character outside the vocabulary: a real native fault from a broken model file, for testing
    that the app survives one.
    """
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "\u2581"]
    tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += [f"\u2581w{i}" for i in range(n_vocab - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([2, 3, 3, 3, 3] + [1] * (len(tokens) - 5))
    w.add_bos_token_id(1)
    w.add_eos_token_id(4)


def finish(w: gguf.GGUFWriter, tmp: Path, out: Path) -> Path:
    """Write a GGUF writer's header, metadata and tensors to ``tmp``, then rename it to ``out`` (a reader
    never sees half a file).

    Returns:
        ``out``.
    """
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(out)
    return out


def write_model(out: Path, preset_name: str | Preset, seed: int = 0, crashing_vocab: bool = False,
                extra_tokens: tuple[str, ...] | list[str] = ()) -> Path:
    """Write one synthetic GGUF.

    Args:
        out: destination path; parent folders are created.
        preset_name: a key of ``PRESETS`` (``tiny`` or ``bench``), or a ``Preset``.
        seed: seed for the random weights.
        crashing_vocab: write a vocabulary that makes llama.cpp abort while tokenizing (see
            ``_add_crashing_vocab``) instead of the byte-level BPE one.
        extra_tokens: more user-defined tokens (``make_vision``'s image markers).

    Returns:
        ``out``.

    Raises:
        KeyError: unknown preset.
    """
    p = PRESETS[preset_name] if isinstance(preset_name, str) else preset_name
    rng = np.random.default_rng(seed)
    tokens, types, merges = build_vocab(p, tuple(extra_tokens))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch=p.arch)
    w.add_name(f"synthetic-{preset_name}" if isinstance(preset_name, str) else "synthetic-vision")
    w.add_context_length(p.n_ctx_train)
    w.add_embedding_length(p.n_embd)
    w.add_block_count(p.n_layer)
    w.add_feed_forward_length(p.n_ff)
    w.add_head_count(p.n_head)
    w.add_head_count_kv(p.n_head_kv)
    w.add_key_length(p.head_dim)
    w.add_value_length(p.head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(p.rope_theta)
    w.add_vocab_size(p.n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if p.weight_type == gguf.GGMLQuantizationType.F32
                    else gguf.LlamaFileType.MOSTLY_Q8_0)
    if crashing_vocab:
        _add_crashing_vocab(w, p.n_vocab)
    else:
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_bos_token_id(tokens.index("<|endoftext|>"))
        w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML_TEMPLATE)

    qt = p.weight_type
    n_q, n_kv = p.n_head * p.head_dim, p.n_head_kv * p.head_dim
    _add_weight(w, "token_embd.weight", _matrix(rng, p.n_vocab, p.n_embd), qt)
    w.add_tensor("output_norm.weight", np.ones(p.n_embd, dtype=np.float32))
    if not p.tied_embeddings:
        _add_weight(w, "output.weight", _matrix(rng, p.n_vocab, p.n_embd), qt)
    for i in range(p.n_layer):
        b = f"blk.{i}"
        w.add_tensor(f"{b}.attn_norm.weight", np.ones(p.n_embd, dtype=np.float32))
        _add_weight(w, f"{b}.attn_q.weight", _matrix(rng, n_q, p.n_embd), qt)
        _add_weight(w, f"{b}.attn_k.weight", _matrix(rng, n_kv, p.n_embd), qt)
        _add_weight(w, f"{b}.attn_v.weight", _matrix(rng, n_kv, p.n_embd), qt)
        _add_weight(w, f"{b}.attn_output.weight", _matrix(rng, p.n_embd, n_q), qt)
        if p.arch == "qwen3":
            w.add_tensor(f"{b}.attn_q_norm.weight", np.ones(p.head_dim, dtype=np.float32))
            w.add_tensor(f"{b}.attn_k_norm.weight", np.ones(p.head_dim, dtype=np.float32))
        w.add_tensor(f"{b}.ffn_norm.weight", np.ones(p.n_embd, dtype=np.float32))
        _add_weight(w, f"{b}.ffn_gate.weight", _matrix(rng, p.n_ff, p.n_embd), qt)
        _add_weight(w, f"{b}.ffn_up.weight", _matrix(rng, p.n_ff, p.n_embd), qt)
        _add_weight(w, f"{b}.ffn_down.weight", _matrix(rng, p.n_embd, p.n_ff), qt)
    return finish(w, tmp, out)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output .gguf path")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crashing-vocab", action="store_true",
                        help="a vocabulary that makes llama.cpp abort while tokenizing (tests the preflight)")
    args = parser.parse_args(argv)
    path = write_model(args.out, args.preset, args.seed, args.crashing_vocab)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, preset {args.preset})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
