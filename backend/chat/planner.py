"""Planning a turn: CAG (the documents in the cached prefix) or RAG (the best retrieved chunks as the
cached prefix, so each chunk's KV state is computed once and restored like a document's; or, with
``rag_prefix_chunks=0``, the top-k chunks in the user turn), within the ``n_ctx`` budgets, for the
local engine (token ids) or a remote server (messages).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from backend.chat.modes import CagLimit, auto_reason, cag_limit
from backend.chat.prompts import Frame, Prompt, build_prompt, chunk_frame, frame, rag_user_text
from backend.config import Settings
from backend.documents import DocumentService, Hit
from backend.inference import Engine, RemoteEngine, RemotePrompt
from backend.kvcache import Splice

MODES = ("auto", "cag", "rag")


class ChatError(ValueError):
    """A turn cannot run; ``str(err)`` is one sentence for the user."""


@dataclass(frozen=True)
class Plan:
    """What a turn will send.

    Attributes:
        mode: ``cag``, ``rag`` or ``chat``.
        prompt: the laid-out prompt.
        prefix_doc_ids: the documents in the cached prefix (one entry per chunk for a RAG prefix).
        retrieved: for RAG, the chunks put before the model, best first.
        retrieved_tokens: tokens the chunks put in the user turn (0 when they are in the prefix).
        prefix_chunks: for a RAG prefix of chunks, each ``prefix_doc_ids`` entry's chunk index.
        retrieval_s: seconds the hybrid search took (0 when the turn did not search).
        doc_ids: the documents the turn selected, in order.
        reason: why this mode, one sentence (the ``mode_reason`` metric).
    """

    mode: str
    prompt: Prompt | RemotePrompt
    prefix_doc_ids: list[str]
    retrieved: list[Hit]
    retrieved_tokens: int = 0
    prefix_chunks: list[int] = field(default_factory=list)
    retrieval_s: float = 0.0
    doc_ids: list[str] = field(default_factory=list)
    reason: str = ""


class Planner:
    """Lays out turns for the local engine, or for a remote server when one is given.

    Args:
        settings: budgets, instructions, top-k.
        documents: document texts and search.
        engine: the local engine (its template and tokenizer).
        remote: an OpenAI-compatible server to plan for instead (messages, its tokenizer).
    """

    def __init__(self, settings: Settings, documents: DocumentService, engine: Engine,
                 remote: RemoteEngine | None = None):
        self.settings, self.documents, self.engine, self.remote = settings, documents, engine, remote

    @property
    def n_ctx(self) -> int:
        """The context window planned for, tokens."""
        return self.remote.n_ctx if self.remote else self.engine.n_ctx

    @property
    def cag_limit(self) -> CagLimit:
        """The longest document prefix ``auto`` reads whole for the model that answers (``modes``)."""
        return cag_limit(self.settings.cag_max_tokens, 0 if self.remote or not self.engine.can_tokenize
                         else self.engine.n_params)

    def auto_mode(self, prefix_tokens: int | None) -> tuple[str, str]:
        """``auto``'s mode and reason for documents whose cached prefix takes ``prefix_tokens`` (None: they do
        not fit ``n_ctx``); the Cache button and prefetch follow the same choice."""
        return auto_reason(prefix_tokens, self.n_ctx, self.cag_limit)

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` for the model that will answer."""
        return self.remote.count_tokens(text) if self.remote else len(self.engine.tokenize(text))

    def _build(self, head: Frame, history: list[dict], user: str, **budgets) -> Prompt | RemotePrompt | None:
        if self.remote:
            return self.remote.build_prompt(head.system, history, user, opening=head.opening, **budgets)
        return build_prompt(self.engine, head, history, user, **budgets)

    def plan(self, owner: str, message: str, doc_ids: list[str], history: list[dict], max_tokens: int,
             mode: str = "auto", splice: Splice | None = None, instructions: str | None = None,
             query: str | None = None) -> Plan:
        """Choose CAG (documents in the cached prefix) or RAG (retrieved chunks: the best
        ``rag_prefix_chunks`` as the cached prefix, or with 0 the top-k in the user turn).

        Args:
            owner / message / doc_ids / history: the turn; ``history`` as ``{"role", "content"}`` dicts.
            max_tokens: the answer's budget, tokens.
            mode: ``auto`` (CAG when the documents fit ``n_ctx`` and the model's CAG limit, ``modes``,
                else RAG), ``cag`` or ``rag`` to force one; ignored without documents (mode ``chat``).
            splice: the session's previous context (``SessionSnapshots``), reused token for token.
            instructions: the session's own system prompt (default: the configured one).
            query: what to search the documents for (default: ``message``; the caller passes the
                bare question when ``message`` carries a date line or a thinking switch).

        Raises:
            ChatError: unknown mode, forced CAG that does not fit, or the question alone does not fit.
            DocumentError: an unknown document id.
        """
        if mode not in MODES:
            raise ChatError(f"Unknown mode '{mode}'; use one of {', '.join(MODES)}.")
        s = self.settings
        instructions = instructions or s.system_prompt
        budgets = {"history_budget_tokens": s.history_budget_tokens, "max_tokens": max_tokens, "splice": splice}
        if doc_ids:
            ids, reason = list(doc_ids), "rag: chosen by the user"
            if mode != "rag":
                docs = [self.documents.text(owner, d) for d in doc_ids]
                prompt = self._build(frame(instructions, docs), history, message, **budgets)
                if mode == "cag" and prompt is not None:
                    return Plan("cag", prompt, ids, [], doc_ids=ids, reason="cag: chosen by the user")
                if mode == "cag":
                    raise ChatError("The selected documents do not fit the context window "
                                    f"(n_ctx {self.n_ctx}) with room for the answer; "
                                    "choose Auto or Retrieval mode, or select fewer documents.")
                chosen, reason = self.auto_mode(prompt.n_prefix if prompt is not None else None)
                if chosen == "cag":
                    return Plan("cag", prompt, ids, [], doc_ids=ids, reason=reason)
            started = time.perf_counter()
            ranked = self.documents.search(owner, query or message, doc_ids, s.retrieval_top_k)
            searched = time.perf_counter() - started
            for k in range(min(s.rag_prefix_chunks, len(ranked)), 0, -1):  # the best chunks as the prefix
                hits = ranked[:k]
                prompt = self._build(chunk_frame(instructions, hits), history, message, **budgets)
                if prompt is not None:
                    return Plan("rag", prompt, [h.doc_id for h in hits], hits, 0, [h.idx for h in hits], searched,
                                ids, reason)
            bare = Frame(instructions)
            question = self.count_tokens(message)
            for k in range(max(len(ranked), 1), 0, -1):  # as many of the best chunks as fit
                hits, user = ranked[:k], rag_user_text(message, ranked[:k])
                prompt = self._build(bare, history, user, **budgets)
                if prompt is not None:
                    return Plan("rag", prompt, [], hits, self.count_tokens(user) - question, retrieval_s=searched,
                                doc_ids=ids, reason=reason)
        else:
            prompt = self._build(Frame(instructions), history, message, **budgets)
            if prompt is not None:
                return Plan("chat", prompt, [], [], reason="chat: no documents selected")
        limit = self.n_ctx - max_tokens
        raise ChatError(f"The question is too long: with the instructions it must fit in {limit} tokens; shorten it.")
