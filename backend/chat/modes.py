"""What ``auto`` answers a question with: the whole documents from their KV cache (CAG) or the best
retrieved chunk (RAG), by what answers better for the loaded model, not only by what fits ``n_ctx``.

A small model reads a long context badly: with the bundled SmolLM2-135M a question about a 5,000-token
article read whole (CAG) was answered right about 1 time in 6 (issue 27), and with only the right
paragraph about 1 in 2. So each model has a longest document prefix it reads well (``cag_max_tokens``): past it, auto
retrieves. It comes from, in order:

1. the ``cag_max_tokens`` setting (``KVC_CAG_MAX_TOKENS``), when set;
2. the size rule below, by the model's parameter count. Its first band was measured with
   ``benchmarks/modes.py`` on SmolLM2-135M (4 tuning SQuAD articles cut into windows of whole
   paragraphs, 80 questions per length, greedy): reading the window whole (CAG) scored 0.350 / 0.400 /
   0.338 / 0.263 / 0.138 contains-gold at 256 / 512 / 1,024 / 2,048 / 4,096 tokens, retrieving its best
   paragraph (RAG) 0.487 / 0.475 / 0.400 / 0.425 / 0.400: retrieval wins at every length, so this model
   reads a document whole only when it is about one chunk long (256 tokens), where both read the same
   text. The larger bands are not measured here (no such model can be had offline); they follow the
   common observation that long-context reading improves with size. Run ``benchmarks/modes.py --model
   FILE`` to measure a model, then set ``cag_max_tokens``.

A remote server (parameter count unknown) and a model past the last band read whole documents
whenever they fit.
"""

from __future__ import annotations

from dataclasses import dataclass

# (fewer parameters than, longest prefix in tokens that auto reads whole); see the module docstring.
SIZE_RULE = (
    (300e6, 256),  # measured: SmolLM2-135M (benchmarks/modes.py): retrieval answers better past one chunk
    (1e9, 4096),  # assumed
    (4e9, 16384),  # assumed
)


@dataclass(frozen=True)
class CagLimit:
    """The longest document prefix auto answers from whole, and where that figure comes from.

    Attributes:
        tokens: the limit, tokens (None: no limit but ``n_ctx``).
        source: ``setting``, ``size rule`` or ``none``.
        parameters: the model's parameter count (0 when unknown).
    """

    tokens: int | None
    source: str
    parameters: int = 0

    @property
    def basis(self) -> str:
        """Where the figure comes from, e.g. ``size rule for 135M parameters`` or ``setting``."""
        if self.source == "size rule":
            return f"size rule for {self.parameters / 1e6:,.0f}M parameters"
        return self.source

    def describe(self) -> str:
        """The limit for people, e.g. ``1,024 tokens (size rule for 135M parameters)``."""
        if self.tokens is None:
            return "no limit but n_ctx"
        return f"{self.tokens:,} tokens ({self.basis})"


def cag_limit(setting: int | None, parameters: int) -> CagLimit:
    """The CAG limit for a model.

    Args:
        setting: ``cag_max_tokens`` from the configuration (None: not set).
        parameters: the loaded model's parameter count (0: unknown, e.g. a remote server).

    Returns:
        The limit and its source.
    """
    if setting is not None:
        return CagLimit(setting, "setting", parameters)
    if parameters > 0:
        for below, tokens in SIZE_RULE:
            if parameters < below:
                return CagLimit(tokens, "size rule", parameters)
    return CagLimit(None, "none", parameters)


def auto_reason(prefix_tokens: int | None, n_ctx: int, limit: CagLimit) -> tuple[str, str]:
    """Auto's choice for documents whose cached prefix takes ``prefix_tokens``.

    Args:
        prefix_tokens: tokens of the instructions and documents (None: they do not fit ``n_ctx`` with
            the question and the answer's room).
        n_ctx: the context window, tokens.
        limit: the model's CAG limit.

    Returns:
        ``(mode, reason)``: ``cag`` or ``rag``, and one sentence saying why.
    """
    if prefix_tokens is None:
        return "rag", f"auto: the documents do not fit n_ctx {n_ctx:,} with the answer, so retrieval"
    if limit.tokens is not None and prefix_tokens > limit.tokens:
        return "rag", (f"auto: the documents take {prefix_tokens:,} tokens, more than the {limit.tokens:,} this model "
                       f"reads well whole ({limit.basis}), so retrieval")
    within = f"the {limit.tokens:,} this model reads well whole ({limit.basis})" if limit.tokens else f"n_ctx {n_ctx:,}"
    return "cag", f"auto: the documents take {prefix_tokens:,} tokens, within {within}, so read whole"
