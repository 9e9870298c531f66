"""Value types shared by the local and the remote engine: errors, sampling settings, stream
statistics, the common-prefix helper both use to count reused tokens, and the one rule for where
a conversation's opening text goes (``open_first_user``), which both lay out the same way."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EngineError", "Interrupted", "NoModelLoaded", "Sampling", "StreamStats", "common_prefix_len", "open_first_user"]


class EngineError(RuntimeError):
    """A model operation failed; ``str(err)`` is one sentence for the user."""


class Interrupted(EngineError):
    """A prefill stopped early because its ``should_stop`` said so (the context keeps what was
    evaluated: a valid, shorter prefix)."""


class NoModelLoaded(EngineError):
    """Raised when a chat or cache request arrives with no model loaded."""

    def __init__(self):
        super().__init__("No model is loaded; open the Model panel to load or download one.")


@dataclass(frozen=True)
class Sampling:
    """Sampling settings for one answer (llama.cpp names; ``temperature`` 0 = greedy)."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int = -1
    ignore_eos: bool = False  # llama-server's ``ignore_eos``: never end early, run to ``max_tokens``


@dataclass
class StreamStats:
    """What one generation did, filled in while it streams.

    Attributes:
        prompt_tokens: tokens in the prompt.
        reused_tokens: prompt tokens whose KV entries were already in the context.
        completion_tokens: tokens generated.
        first_token_at / finished_at: ``time.perf_counter()`` stamps, seconds.
        stop_reason: ``eos``, ``length`` or ``""`` while running.
        server_cached_tokens: prompt tokens a remote server reported as taken from its prefix
            cache (None for the local engine, or when the server does not say).
        image_tokens: prompt tokens that stand for images (their KV cells), reused or not.
        image_encode_s: seconds spent encoding and decoding images this time (0 when all were reused).
        probe: for a probe job (``Job.probe``), each token group's log-probability after the prompt, in the
            groups' order (natural log; empty otherwise).
    """

    prompt_tokens: int = 0
    reused_tokens: int = 0
    completion_tokens: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    stop_reason: str = ""
    server_cached_tokens: int | None = None
    image_tokens: int = 0
    image_encode_s: float = 0.0
    probe: list[float] = field(default_factory=list)


def common_prefix_len(a, b) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def open_first_user(messages: list[dict[str, str]], opening: str) -> list[dict[str, str]]:
    """The messages with ``opening`` put at the start of the first user message, joined to it by a
    space (the opening ends with a cue such as ``Question:``, and the space goes with the question's
    first word, as BPE tokenizers attach it).

    Args:
        messages: ``{"role", "content"}`` dicts, oldest first; not modified.
        opening: text that opens the conversation ("" leaves the messages as they are).

    Returns:
        A new list; only the first ``user`` message differs.
    """
    if not opening:
        return list(messages)
    out, opened = [], False
    for m in messages:
        if not opened and m["role"] == "user":
            m, opened = {**m, "content": f"{opening} {m['content']}"}, True
        out.append(m)
    return out
