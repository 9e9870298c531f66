"""One sequence's sampler: a llama.cpp sampler chain built from ``Sampling``, so every sequence in
a batch samples with its own settings and its own random state.

The chain follows ``llama_cpp.Llama._init_sampler`` (what ``Llama.generate`` used before):
repetition penalty, then greedy at temperature 0, else top-k, top-p, min-p, temperature and a
seeded draw. With ``ignore_eos`` a logit bias of -inf on the end-of-generation tokens comes first
(llama-server's ``ignore_eos`` does the same), so the answer runs to ``max_tokens``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import llama_cpp
import numpy as np

from backend.inference.types import Sampling

# Tokens the repetition penalty looks back over (llama-cpp-python's ``last_n_tokens_size``).
PENALTY_LAST_N = 64
# llama.cpp's LLAMA_DEFAULT_SEED: the dist sampler then seeds itself at random.
RANDOM_SEED = 0xFFFFFFFF


class SeqSampler:
    """A llama.cpp sampler chain for one sequence.

    Args:
        sampling: the answer's settings (``temperature`` 0 = greedy; ``seed`` -1 = random).
        n_vocab: the vocabulary's size, tokens (needed with ``ignore_eos``).
        eog_tokens: the end-of-generation token ids ``ignore_eos`` bans.

    Close it (``close``) when the sequence is done; it owns C memory.
    """

    def __init__(self, sampling: Sampling, n_vocab: int = 0, eog_tokens: list[int] | tuple[int, ...] = ()):
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)
        if sampling.ignore_eos and eog_tokens:
            bias = (llama_cpp.llama_logit_bias * len(eog_tokens))(
                *(llama_cpp.llama_logit_bias(t, float("-inf")) for t in eog_tokens))
            add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(eog_tokens), ctypes.cast(
                bias, ctypes.POINTER(llama_cpp.llama_logit_bias))))
        if sampling.repeat_penalty != 1.0:
            add(llama_cpp.llama_sampler_init_penalties(PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0))
        if sampling.temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
            add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
            add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
            add(llama_cpp.llama_sampler_init_dist(sampling.seed if sampling.seed >= 0 else RANDOM_SEED))
        self._chain = chain

    def sample(self, ctx, index: int) -> int:
        """Sample a token from the logits of output ``index`` of the last ``llama_decode`` and
        record it in the chain (penalties see it).

        Args:
            ctx: the ``llama_context`` pointer.
            index: the batch position whose logits were requested.

        Returns:
            The token id.
        """
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        """Free the chain (idempotent)."""
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


def group_logprobs(ctx, index: int, n_vocab: int, groups: Sequence[Sequence[int]]) -> list[float]:
    """Each token group's log-probability at output ``index`` of the last ``llama_decode``: the log of the softmax
    mass of its tokens over the whole vocabulary (e.g. ``[["yes", "Yes"], ["no", "No"]]`` as token ids).

    Args:
        ctx: the ``llama_context`` pointer.
        index: the batch position whose logits were requested.
        n_vocab: the vocabulary's size, tokens.
        groups: token ids per group.

    Returns:
        One natural-log probability per group, in order.
    """
    row = llama_cpp.llama_get_logits_ith(ctx, index)
    logits = np.ctypeslib.as_array(row, shape=(n_vocab,)).astype(np.float64)
    total = np.logaddexp.reduce(logits)
    return [float(np.logaddexp.reduce(logits[list(g)]) - total) for g in groups]
