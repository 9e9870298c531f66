"""Preparing a chat turn before anything is streamed: the question cleaned and checked, the session and its
snapshot read, images loaded, memory and the web consulted, and the prompt planned (whole documents or retrieval,
the cached prefix, the budgets). Every user error of a turn is raised here, before its first token.
``ChatService`` is a ``Preparation``; streaming the planned turn stays in ``service``.
"""

from __future__ import annotations

from dataclasses import replace

from backend.chat.images import history_images, keep_images, load_images, text_only_refusal, with_markers
from backend.chat.planner import ChatError
from backend.chat.text import clean_text
from backend.chat.turn_input import compose
from backend.chat.turns import Turn
from backend.inference import MARKER, NoModelLoaded, Sampling
from backend.kvcache import fingerprint


class Preparation:
    """``prepare_turn`` and the default sampling, for ``ChatService``, which gives them its ``settings``,
    ``engine``, ``remote``, ``replicas``, ``sessions``, ``snapshots``, ``memory``, ``documents``, ``planner``,
    ``clock`` and ``_closing`` (see its arguments)."""

    def default_sampling(self) -> Sampling:
        """Sampling settings from the configuration."""
        s = self.settings
        return Sampling(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                        min_p=s.min_p, repeat_penalty=s.repeat_penalty, seed=s.seed)

    def prepare_turn(self, owner: str, session_id: str, message: str, doc_ids: list[str],
                     sampling: Sampling | None = None, mode: str = "auto", thinking: bool | None = None,
                     web: bool | None = None, remember: bool | None = None, images: list | None = None) -> Turn:
        """Validate a message and plan its prompt; every user error is raised here, before any output.

        Args:
            owner: the user.
            session_id: an existing session.
            message: the question.
            doc_ids: selected documents, in order (may be empty).
            sampling: overrides the configured sampling.
            mode: ``auto``, ``cag`` or ``rag`` (see ``plan``).
            thinking: for models with a thinking switch (Qwen3's ``/think`` and ``/no_think``, found
                in the chat template; always applied with a remote server), think first or not;
                None leaves the model's default. The switch goes into this prompt only, not history.
            web: search the web (SearXNG at ``search_url``) and put the results in the turn; None lets
                the router decide (time-sensitive questions, when ``search_url`` is set). A failed or
                impossible search is noted in ``web_note``, never raised.
            remember: recall the user's related questions from other sessions into this turn;
                None = ``remember_across_sessions``.
            images: file paths or data URLs of images attached to the message (``load_images``).

        Returns:
            The planned turn, to pass to ``run_turn``.

        Raises:
            ChatError: empty message, prompt too long, the app is shutting down, or an image that cannot be
                read or seen (a text-only model: the sentence quotes the text OCR reads in it).
            TextError: the message holds broken Unicode (control characters are removed, ``clean_text``).
            SessionNotFound / SessionError: bad session id or Redis unreachable.
            NoModelLoaded: no model.
            DocumentError: an unknown document id.
        """
        message = clean_text(message, "The question").replace(MARKER, "").strip()  # the marker is the prompt's
        if not message:
            raise ChatError("The message is empty; type a question first.")
        if self._closing:
            raise ChatError("The app is shutting down; send the question again when it is back.")
        sampling = sampling or self.default_sampling()
        if self.settings.ignore_eos:
            sampling = replace(sampling, ignore_eos=True)
        pictures = load_images(images or [], self.settings)
        if pictures and (self.remote is not None or self.engine.projector is None):
            raise ChatError(text_only_refusal(pictures, self.documents.ocr))
        session = self.sessions.get(owner, session_id)
        history = [{"role": m["role"], "content": (m.get("sent") or m["content"]).replace(MARKER, "")}
                   for m in session.messages]
        snapshot, earlier = None, []
        if self.replicas is not None:
            if not self.engine.can_tokenize:
                raise NoModelLoaded()
        elif self.remote is None:
            if not self.engine.loaded:
                raise NoModelLoaded()
            if self.engine.projector is not None:  # a follow-up still sees the images it is about
                earlier = history_images(session.messages, history, self.settings,
                                         self.settings.max_images_per_message - len(pictures))
            if not pictures and not earlier:  # an image turn's tokens are laid out again (``image_turn``)
                snapshot = self.snapshots.get(owner, session_id, fingerprint(self.engine))
        supported = self.remote is not None or self.engine.has_thinking_switch
        extra = compose(self.settings, self.memory, owner, session_id, message, now=self.clock(), web=web,
                        remember=remember, switch=thinking if supported else None)
        asked = extra.sent
        plan = self.planner.plan(owner, with_markers(asked, len(pictures)), doc_ids, history, sampling.max_tokens,
                                 mode, snapshot.splice if snapshot else None, session.system_prompt, query=message)
        files = tuple(keep_images(self.settings.path("images"), pictures)) if pictures else ()
        laid = earlier + pictures  # only a local prompt has images (a remote one has no text to count in)
        shown = plan.prompt.text[plan.prompt.prefix_chars:].count(MARKER) if laid else 0  # trimmed history loses some
        return Turn(owner, session_id, message, plan, sampling, snapshot, self.engine.generation, extra,
                    tuple(laid[len(laid) - shown:]) if shown else (), files)
