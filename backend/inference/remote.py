"""Remote inference: an OpenAI-compatible server (vLLM, llama.cpp's llama-server, SGLang,
llama-cpp-python's ``llama_cpp.server``) reached with httpx, for users who outgrow one machine.

The chat flow is the same as with the local engine; only the last step changes. The prompt goes
as chat messages, laid out exactly as locally (instructions in the system message, the documents
opening the first user message, byte-identical on every turn; history; RAG chunks in the user
turn), so the server's own prefix
cache (vLLM's automatic prefix caching, llama-server's ``cache_prompt``) reuses the documents.
Priming sends that prefix with ``max_tokens=1``. Token counts for the budgets come from the
server's tokenizer endpoint where it has one (``/extras/tokenize``: llama_cpp.server;
``/tokenize``: llama-server and vLLM), else from a conservative estimate of 3 bytes per token.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from backend.inference.types import EngineError, Sampling, StreamStats, open_first_user

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 8  # role markers a chat template adds around each message (ChatML uses 5)


@dataclass(frozen=True)
class RemotePrompt:
    """A prompt for a remote server: chat messages and their token counts.

    Attributes:
        messages: ``{"role", "content"}`` dicts, system first.
        n_prefix: tokens of the system message and the opening (the part the server's prefix cache reuses).
        n_tokens: tokens of the whole prompt (estimated when the server cannot tokenize).
        history_messages / history_tokens: earlier messages included, and their tokens.
    """

    messages: list[dict]
    n_prefix: int
    n_tokens: int
    history_messages: int = 0
    history_tokens: int = 0


class RemoteEngine:
    """Client of one OpenAI-compatible server.

    Args:
        base_url: the API root, e.g. ``http://gpu-box:8000/v1``.
        api_key: sent as a Bearer token (optional).
        model: the model name the server serves.
        n_ctx: the server's context window, tokens.
        timeout_s: connect/read timeout, seconds.
    """

    def __init__(self, base_url: str, api_key: str | None, model: str, n_ctx: int, timeout_s: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.model, self.n_ctx = model, n_ctx
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._tokenize_dialect: str | None = None  # learned on first use

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    # tokens ------------------------------------------------------------------------------
    @functools.lru_cache(maxsize=256)  # noqa: B019 (one client per app, alive as long as it; documents recount every turn)
    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the server's tokenizer, or ``len(bytes) // 3 + 1`` when it has none."""
        dialects = [self._tokenize_dialect] if self._tokenize_dialect else ["extras", "llama-server", "vllm", "none"]
        for dialect in dialects:
            try:
                if dialect == "extras":
                    r = self.http.post(f"{self.root}/extras/tokenize", json={"input": text, "model": self.model})
                elif dialect == "llama-server":
                    r = self.http.post(f"{self.root}/tokenize", json={"content": text})
                elif dialect == "vllm":
                    r = self.http.post(f"{self.root}/tokenize", json={"prompt": text, "model": self.model})
                else:
                    self._tokenize_dialect = "none"
                    return len(text.encode("utf-8")) // 3 + 1
                if r.status_code == 200 and isinstance(r.json().get("tokens"), list):
                    self._tokenize_dialect = dialect
                    return len(r.json()["tokens"])
            except (httpx.HTTPError, ValueError):
                continue
        return len(text.encode("utf-8")) // 3 + 1

    def build_prompt(self, system: str, history: list[dict], user: str, *, history_budget_tokens: int,
                     max_tokens: int, splice=None, opening: str = "") -> RemotePrompt | None:
        """Lay out the messages, trimming the oldest history to the budgets (as ``prompts.build_prompt``).

        Args:
            system: the system message.
            history / user: earlier ``{"role", "content"}`` messages, oldest first, and this turn's.
            history_budget_tokens / max_tokens: budgets, tokens.
            splice: ignored (the server keeps its own context).
            opening: the documents' text that opens the first user message (``open_first_user``).

        Returns:
            The prompt, or None when even without history it exceeds ``n_ctx - max_tokens``.
        """
        head, last = {"role": "system", "content": system}, {"role": "user", "content": user}
        n_head, tail = self._prefix_size(system, opening), self._message_size(user)
        limit = self.n_ctx - max_tokens
        if n_head + tail > limit:
            return None
        sizes = [self._message_size(m["content"]) for m in history]
        for first in range(len(history) % 2, len(history), 2):  # whole user/assistant pairs
            used = sum(sizes[first:])
            if n_head + tail + used <= limit and used <= history_budget_tokens:
                return RemotePrompt(open_first_user([head, *history[first:], last], opening), n_head,
                                    n_head + tail + used, len(history) - first, used)
        return RemotePrompt(open_first_user([head, last], opening), n_head, n_head + tail)

    def _message_size(self, content: str) -> int:
        """Tokens one message takes, with its template's role markers."""
        return self.count_tokens(content) + MESSAGE_OVERHEAD_TOKENS

    def _prefix_size(self, system: str, opening: str) -> int:
        """Tokens of the prefix the server's cache reuses: the system message and the opening."""
        return self._message_size(system) + (self.count_tokens(opening) if opening else 0)

    # generation --------------------------------------------------------------------------
    def _payload(self, messages: list[dict], sampling: Sampling, stream: bool) -> dict:
        body = {"model": self.model, "messages": messages, "stream": stream, "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
                "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty}
        if sampling.seed >= 0:
            body["seed"] = sampling.seed
        if sampling.ignore_eos:
            body["ignore_eos"] = True  # llama-server, vLLM and SGLang read it
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def stream(self, prompt: RemotePrompt, sampling: Sampling, stats: StreamStats) -> Iterator[str]:
        """Stream an answer over server-sent events, filling ``stats`` from ``usage`` (or llama-server's
        ``timings``) when the server reports them.

        Yields:
            Text pieces.

        Raises:
            EngineError: the server is unreachable or answered with an error (one sentence).
        """
        stats.prompt_tokens = prompt.n_tokens
        url = f"{self.base_url}/chat/completions"
        try:
            with self.http.stream("POST", url, json=self._payload(prompt.messages, sampling, True)) as r:
                if r.status_code != 200:
                    r.read()
                    raise EngineError(f"The inference server at {self.base_url} answered {r.status_code}: "
                                      f"{r.text[:200]}; check the remote settings.")
                for line in r.iter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    piece = self._event(json.loads(line[5:]), stats)
                    if piece:
                        if stats.first_token_at is None:
                            stats.first_token_at = time.perf_counter()
                        yield piece
        except httpx.HTTPError as exc:
            raise EngineError(f"The inference server at {self.base_url} cannot be reached ({type(exc).__name__}); "
                              "check that it is running and the remote URL.") from exc
        finally:
            stats.finished_at = time.perf_counter()

    @staticmethod
    def _event(event: dict, stats: StreamStats) -> str:
        """Apply one streamed chunk to ``stats``; return its text."""
        usage = event.get("usage") or {}
        if usage.get("prompt_tokens"):
            stats.prompt_tokens = int(usage["prompt_tokens"])
            stats.completion_tokens = int(usage.get("completion_tokens") or stats.completion_tokens)
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        timings = event.get("timings") or {}
        if cached is None and "cache_n" in timings:
            cached = timings["cache_n"]
        if cached is not None:
            stats.server_cached_tokens = int(cached)
            stats.reused_tokens = int(cached)
        text = ""
        for choice in event.get("choices") or []:
            text += (choice.get("delta") or {}).get("content") or ""
            if choice.get("finish_reason"):
                stats.stop_reason = "eos" if choice["finish_reason"] == "stop" else choice["finish_reason"]
        if text and not usage:
            stats.completion_tokens += 1  # one chunk per token until usage gives the exact count
        return text

    def prime(self, system: str, opening: str = "") -> dict:
        """Send the prefix (the system message, and the documents' opening) with ``max_tokens=1`` so
        the server caches it.

        Returns:
            ``{"tokens", "cached_tokens", "seconds"}`` (tokens of the prefix; cached as reported).
        """
        start = time.perf_counter()
        messages = open_first_user([{"role": "system", "content": system}, {"role": "user", "content": "."}], opening)
        try:
            r = self.http.post(f"{self.base_url}/chat/completions",
                               json=self._payload(messages, Sampling(max_tokens=1, temperature=0.0), False))
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise EngineError(f"The inference server at {self.base_url} could not prime the document "
                              f"({type(exc).__name__}); check that it is running.") from exc
        usage = r.json().get("usage") or {}
        return {"tokens": self._prefix_size(system, opening),
                "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
                "seconds": round(time.perf_counter() - start, 4)}

    def status(self) -> dict:
        """Whether the server answers ``GET /models``, and the models it lists."""
        try:
            r = self.http.get(f"{self.base_url}/models", timeout=5.0)
            r.raise_for_status()
            models = [m.get("id") for m in r.json().get("data", [])]
            return {"reachable": True, "served_models": models}
        except (httpx.HTTPError, ValueError) as exc:
            return {"reachable": False, "served_models": [], "error": type(exc).__name__}
