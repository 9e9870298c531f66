"""Chat panel: a streaming ``gr.Chatbot`` bound to a Redis session kept in the browser."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.chat import SessionNotFound, source_location
from backend.services import Services
from components import sampling
from components.common import USER_ERRORS, budget_line, loading_line, metrics_line, owner_of, question_slot, user_errors
from components.documents import DocumentsPanel


def with_metrics(answer: str, metrics: dict | None) -> str:
    """Answer text plus its metrics line, as shown in the chat."""
    if not metrics:
        return answer
    budget = budget_line(metrics)
    return f"{answer}\n\n<sub>{metrics_line(metrics)}</sub>" + (f"<br><sub>{budget}</sub>" if budget else "")


SNIPPET_CHARS = 90
QUOTE_CHARS = 400  # a cited sentence is shown whole up to this many characters
UPDATE_INTERVAL_S = 0.04  # at most ~25 screen updates a second while streaming; a fast model sends far more tokens
REPAINT_CHARS_PER_S = 100_000  # characters of answer the browser is asked to re-render per second, at most


def repaint_interval(chars: int) -> float:
    """Seconds to wait between two screen updates of a streaming answer ``chars`` characters long.

    The browser re-renders the whole message (Markdown) on each update, so a fixed rate costs it time
    in proportion to the answer's length: a 40,000-character answer at 25 updates a second left a
    loaded 2-core machine's page seconds behind and unclickable. Spacing updates by length keeps the
    render work per second bounded (``REPAINT_CHARS_PER_S``); short answers still update every
    ``UPDATE_INTERVAL_S``.
    """
    return max(UPDATE_INTERVAL_S, chars / REPAINT_CHARS_PER_S)


def place_line(place: int) -> str:
    """What a waiting answer shows: its place in line (1 = next) while every sequence is busy."""
    suffix = "th" if 10 <= place % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(place % 10, "th")
    return f"*Waiting: {place}{suffix} in line. Every sequence is answering someone; yours starts when one is free.*"


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The first ``limit`` characters of a chunk on one line, with an ellipsis when cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def quote_of(source: dict) -> str:
    """A source's quoted text (``quote``; answers saved before citations carried the chunk as ``text``)."""
    return source.get("quote") or source.get("text", "")


def source_messages(sources: list[dict]) -> list[dict]:
    """An answer's sources as small messages under it, ``[i] name, p. N · section: “quote”``; clicking one
    opens the page in the source viewer (``components/sources.py``, through the Chatbot's select event).

    Args:
        sources: ``Source`` dicts as stored with the answer.
    """
    return [{"role": "assistant", "content": citation_text(f"[{i}]", s), "metadata": {"id": f"source-{i}"}}
            for i, s in enumerate(sources, 1)]


def citation_text(label: str, source: dict) -> str:
    """One citation as Markdown: its label, where it is, and the quote (whole up to ``QUOTE_CHARS``)."""
    where = source_location(source, " · ")
    return f"<sub>{label} **{source['name']}**, {where} ↗</sub><br>“{snippet(quote_of(source), QUOTE_CHARS)}”"


GROUNDING_LINES = {
    "supported": "✓ Supported by the documents: the sources below hold what it says (click one to open it).",
    "partial": "◐ Partly supported: the sources below hold what it says, but could not be confirmed to answer this "
               "question; check the quote.",
    "not_found": "⚠ Not found in the selected documents.",
}


def grounding_line(grounding: str | None, note: str = "") -> str:
    """The verdict under an answer, one line ("" for an answer without documents): for ⚠ with its reason; for ◐
    with a note (a model without a calibration, or sources that do not hold the answer), ◐ and that note."""
    if not grounding:
        return ""
    if grounding == "partial" and note:
        return f"◐ {note}"
    line = GROUNDING_LINES.get(grounding, "")
    return f"{line} {note}".strip() if grounding == "not_found" else line


def closest_messages(closest: dict | None) -> list[dict]:
    """For an answer not found in the documents: the passage closest to the question, offered to open."""
    if not closest:
        return []
    return [{"role": "assistant", "content": citation_text("Closest passage:", closest), "metadata": {"id": "closest"}}]


def retrieved_messages(retrieved: list[dict]) -> list[dict]:
    """The chunks a RAG answer read, as one collapsed message that opens to each chunk's text."""
    if not retrieved:
        return []
    body = "\n\n".join(f"**{h['name']}, {source_location(h, ' · ')}**\n\n{h['text']}" for h in retrieved)
    n = len(retrieved)
    return [{"role": "assistant", "content": body,
             "metadata": {"title": f"Read {n} retrieved chunk{'s' * (n != 1)}", "status": "done", "id": "retrieved"}}]


def thinking_messages(thought: str, done: bool) -> list[dict]:
    """The model's thinking as one collapsible "Thinking" message (none when it did not think)."""
    if not thought.strip():
        return []
    return [{"role": "assistant", "content": thought.strip(),
             "metadata": {"title": "Thinking", "status": "done" if done else "pending"}}]


def web_messages(results: list[dict]) -> list[dict]:
    """Web results an answer used, as collapsed messages titled "[Wi] title" that open to URL and snippet."""
    return [{"role": "assistant", "content": f"{r['url']}\n\n{r['snippet']}",
             "metadata": {"title": f"[W{i}] {r['title']}", "status": "done"}} for i, r in enumerate(results, 1)]


def answer_messages(text: str, data: dict) -> list[dict]:
    """One finished answer as Chatbot messages: the text with its grounding verdict and metrics line (and
    a note when a web search was asked for but not used), then its sources (or the closest passage), the
    chunks it read, and its web sources. An answer the documents do not hold (``not_found``) shows its verdict
    first and the answer itself folded under it, never deleted.

    Args:
        text: the answer.
        data: the saved message's (or the ``done`` event's) fields: ``metrics``, ``sources``, ``grounding``,
            ``grounding_note``, ``closest``, ``retrieved``, ``web_sources`` (each may be missing).
    """
    metrics = data.get("metrics")
    note = (metrics or {}).get("web_note")
    verdict = grounding_line(data.get("grounding"), data.get("grounding_note", ""))
    folded = []
    if data.get("grounding") == "not_found":  # the verdict first; the answer kept, folded under it
        body = with_metrics(verdict, metrics)
        folded = [{"role": "assistant", "content": text or "(no text)",
                   "metadata": {"title": "The model's answer, which the documents do not support", "status": "done",
                                "id": "unsupported"}}]
    else:
        body = with_metrics(text + (f"\n\n{verdict}" if verdict else ""), metrics)
    body += f"\n\n<sub>⚠ {note}</sub>" if note else ""
    return [{"role": "assistant", "content": body}, *folded, *source_messages(data.get("sources") or []),
            *closest_messages(data.get("closest")), *retrieved_messages(data.get("retrieved") or []),
            *web_messages(data.get("web_sources") or [])]


def user_message(text: str, images: list[str]) -> dict:
    """A question as the Chatbot shows it: its images (file paths) above its text, in one message."""
    return {"role": "user", "content": [*({"path": str(p)} for p in images), text] if images else text}


def to_chatbot(messages: list[dict], images: Path | None = None) -> list[dict]:
    """Stored session messages -> Chatbot messages (images with their question; verdict, metrics and sources
    under each answer).

    Args:
        messages: the session's stored messages.
        images: ``data_dir/images``, where a question's images are kept (None: shown without them).
    """
    out: list[dict] = []
    for m in messages:
        if m["role"] == "assistant":
            out.extend(answer_messages(m["content"], m))
        elif m.get("images") and images is not None:
            out.append(user_message(m["content"], [images / name for name in m["images"] if (images / name).is_file()]))
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def cited_source(displayed: list[dict], index: int, stored: list[dict]) -> dict | None:
    """The source (or closest passage) behind the Chatbot message at ``displayed[index]``, from the saved
    answer it belongs to; None when that message is not a citation.

    The Chatbot shows one user message per stored one, so the answer a citation belongs to is the stored
    assistant message after the k-th user message, k counted on screen.
    """
    meta = (displayed[index].get("metadata") or {}) if 0 <= index < len(displayed) else {}
    kind = str(meta.get("id") or "")
    k = sum(1 for m in displayed[: index + 1] if m["role"] == "user")
    users = [i for i, m in enumerate(stored) if m["role"] == "user"]
    if not (kind.startswith("source-") or kind == "closest") or not 0 < k <= len(users):
        return None
    answer = next((m for m in stored[users[k - 1] + 1:] if m["role"] == "assistant"), None)
    if answer is None:
        return None
    if kind == "closest":
        return answer.get("closest")
    n = int(kind.removeprefix("source-"))
    sources = answer.get("sources") or []
    return sources[n - 1] if 0 < n <= len(sources) and "start" in sources[n - 1] else None


def stored_index(displayed: list[dict], index: int, stored: list[dict]) -> int:
    """Where the user message at ``displayed[index]`` sits in the stored session.

    The Chatbot shows more messages than are stored (thinking, sources), but one per user message,
    so the k-th user message on screen is the k-th stored one.

    Raises:
        ValueError: ``displayed[index]`` is not a user message, or the session has fewer of them.
    """
    if displayed[index]["role"] != "user":
        raise ValueError("only a question can be retried, undone or edited")
    k = sum(1 for m in displayed[: index + 1] if m["role"] == "user")
    users = [i for i, m in enumerate(stored) if m["role"] == "user"]
    if k > len(users):
        raise ValueError("the chat on screen is ahead of the saved session")
    return users[k - 1]


@dataclass
class ChatPanel:
    """Components the app wires on page load."""

    session: gr.BrowserState
    chatbot: gr.Chatbot
    load_history: Callable  # (session_id, request) -> Chatbot messages; app.py runs it on page load
    answered: object  # the submit event; app.py chains refreshes of the other panels to it
    stopped: object  # the stop button's event, after the stopped answer is shown


def render(services: Services, documents: DocumentsPanel) -> ChatPanel:
    """Build the chat panel and wire its events; on page load the stored session's history is shown."""
    session = gr.BrowserState(None, storage_key="kvc_session_id")
    chatbot = gr.Chatbot(label="Chat", height=520, buttons=["copy"], layout="bubble", editable="user",
                         placeholder="Upload a document, tick it under **Use in chat**, and ask a question.")
    mode = gr.Radio([("Auto", "auto"), ("Whole documents (CAG)", "cag"), ("Retrieval (RAG)", "rag")], value="auto",
                    label="Mode", container=False,
                    info="Auto reads whole documents from their KV cache when they fit n_ctx and are short enough "
                         "for the model to read well (Model panel: CAG limit), else retrieves the best chunk. Every "
                         "answer says which and why.")
    with gr.Row(equal_height=True):
        thinking = gr.Dropdown([("Model default", "default"), ("Think", "on"), ("Don't think", "off")],
                               value="default", label="Thinking", info="Qwen3's /think and /no_think", scale=1)
        web = gr.Dropdown([("Auto", "auto"), ("On", "on"), ("Off", "off")], value="auto", label="Web search",
                          info="Auto: time-sensitive questions, when search_url is set", scale=1)
        remember = gr.Checkbox(services.settings.remember_across_sessions, label="Remember across sessions",
                               info="Recall related questions from your other chats", scale=1)
    message = gr.MultimodalTextbox(placeholder="Ask about your documents…",
                                   show_label=False, lines=1, max_lines=8, submit_btn=True, stop_btn=True,
                                   file_types=["image"], file_count="multiple", sources=["upload"])
    knobs = sampling.render(services)
    thinking.change(sampling.recommended, thinking, knobs[:4], api_visibility="private")

    def respond(value: dict | str | None, history: list, session_id: str | None, doc_ids: list[str], mode: str,
                think: str, web_choice: str, recall: bool, temperature: float, top_p: float, top_k: int,
                min_p: float, repeat_penalty: float, max_tokens: int, seed: int, request: gr.Request):
        chosen = sampling.to_sampling((temperature, top_p, top_k, min_p, repeat_penalty, max_tokens, seed))
        owner = owner_of(request)
        text, images = (value, []) if isinstance(value, str) else ((value or {}).get("text", ""),
                                                                    list((value or {}).get("files") or []))
        if not (text or "").strip():
            raise gr.Error("The message is empty; type a question first.")
        switch, use_web = ({"on": True, "off": False}.get(choice) for choice in (think, web_choice))
        with user_errors(), question_slot(services, request):
            session_id = session_id or services.sessions.create(owner)
            waiting = loading_line(services.readiness()) if doc_ids else ""
            if waiting:  # just after a start: planning may wait for the documents' index or the embedder
                yield value, [*history, user_message(text, []), {"role": "assistant", "content": waiting}], session_id
            try:  # validates and plans; every user error is raised here, before any output
                turn = services.chat.prepare_turn(owner, session_id, text, list(doc_ids or []), chosen, mode=mode,
                                                  thinking=switch, web=use_web, remember=bool(recall), images=images)
            except SessionNotFound:
                gr.Info("That chat had expired, so a new one was started.")
                session_id, history = services.sessions.create(owner), []
                turn = services.chat.prepare_turn(owner, session_id, text, list(doc_ids or []), chosen, mode=mode,
                                                  thinking=switch, web=use_web, remember=bool(recall), images=images)
            except USER_ERRORS:
                if waiting:  # the status line goes; the question goes back in the box, to send again
                    yield value, history, session_id
                raise
            kept = [services.settings.path("images") / name for name in turn.image_files]
            before = [*history, user_message(text, kept)]
            yield "", [*before, {"role": "assistant", "content": ""}], session_id
            try:
                yield from stream_answer(services.chat.run_turn(turn), before, session_id)
            except USER_ERRORS:  # e.g. Redis went away: the question goes back in the box, to send again
                yield value, history, session_id
                raise

    def stream_answer(events, before: list, session_id: str):
        """The chat box's updates as a turn's events arrive: "" for the message box, the history, the session."""
        thought, answer, shown_at = "", "", 0.0
        for event in events:
            if event.kind in ("token", "thinking"):
                if event.kind == "token":
                    answer += event.text
                else:
                    thought += event.text
                if time.monotonic() - shown_at >= repaint_interval(len(answer) + len(thought)):
                    shown_at = time.monotonic()
                    yield "", [*before, *thinking_messages(thought, done=bool(answer)),
                               {"role": "assistant", "content": answer}], session_id
            elif event.kind == "queued":
                yield "", [*before, {"role": "assistant", "content": place_line(event.data["place"])}], session_id
            elif event.kind == "done":
                yield "", [*before, *thinking_messages(thought, done=True),
                           *answer_messages(event.text, event.data)], session_id

    def after_stop(session_id: str | None, request: gr.Request):
        """The stopped answer was saved, marked stopped, by the turn's worker; show it as saved."""
        deadline = time.monotonic() + 5
        while session_id and services.chat.running(session_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        return load_history(session_id, request)

    def load_history(session_id: str | None, request: gr.Request):
        if not session_id:
            return []
        try:
            return to_chatbot(services.sessions.get(owner_of(request), session_id).messages,
                              services.settings.path("images"))
        except SessionNotFound:
            return []

    def prefetch_selection(session_id: str | None, doc_ids: list[str], mode: str, request: gr.Request) -> str | None:
        """Start restoring the selection's prefix; the chat gets its session now, so that its first
        question is known to be the one the prefetch is for (a question for another session preempts)."""
        owner = owner_of(request)
        with contextlib.suppress(*USER_ERRORS):  # a prefetch that cannot run costs nothing
            if services.engine.loaded:
                session_id = session_id or services.sessions.create(owner)
                services.primer.prefetch(owner, session_id, list(doc_ids or []), mode)
        return session_id

    for control in (documents.selector, mode):
        control.change(prefetch_selection, [session, documents.selector, mode], [session], queue=False,
                       show_progress="hidden", api_visibility="private")
    def rewind(history: list, session_id: str | None, index: int, request: gr.Request) -> tuple[str, list]:
        """Cut the saved session and the screen back to before the question at ``index``; returns
        that question's text and the shortened history."""
        if not session_id:
            raise gr.Error("This chat is not saved yet; ask a question first.")
        owner = owner_of(request)
        with user_errors():
            stored = services.sessions.get(owner, session_id).messages
            try:
                cut = stored_index(history, index, stored)
            except ValueError as exc:
                raise gr.Error(f"That message cannot be changed: {exc}.") from exc
            services.sessions.truncate(owner, session_id, cut)
        return stored[cut]["content"], history[:index]

    def retry(history: list, session_id: str | None, data: gr.RetryData, request: gr.Request):
        return rewind(history, session_id, data.index, request)

    def undo(history: list, session_id: str | None, data: gr.UndoData, request: gr.Request):
        return rewind(history, session_id, data.index, request)

    def edit(history: list, session_id: str | None, data: gr.EditData, request: gr.Request):
        _, kept = rewind(history, session_id, data.index, request)
        return data.value, kept

    turn_inputs = [message, chatbot, session, documents.selector, mode, thinking, web, remember, *knobs]
    # answers are batched by the engine's scheduler, which queues them when every sequence is busy
    llm = {"concurrency_id": "chat", "concurrency_limit": None, "api_visibility": "private"}
    answered = message.submit(respond, turn_inputs, [message, chatbot, session], **llm)
    for event, handler in ((chatbot.retry, retry), (chatbot.edit, edit)):  # cut back, then answer again
        event(handler, [chatbot, session], [message, chatbot], api_visibility="private").then(
            respond, turn_inputs, [message, chatbot, session], **llm)
    chatbot.undo(undo, [chatbot, session], [message, chatbot], api_visibility="private")
    stopped = message.stop(None, None, None, cancels=[answered], api_visibility="private").then(
        after_stop, session, chatbot, api_visibility="private")
    return ChatPanel(session=session, chatbot=chatbot, load_history=load_history, answered=answered,
                     stopped=stopped)
