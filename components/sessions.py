"""Sessions sidebar: the user's chats, newest first, titled from their first message; open, start,
rename, delete and export one."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from backend.chat import FORMATS, SessionNotFound, export_session
from backend.services import Services
from components.chat import ChatPanel, to_chatbot
from components.common import owner_of, user_errors


def chat_choices(services: Services, owner: str) -> list[tuple[str, str]]:
    """(label, session_id) for every chat of ``owner``, most recently updated first."""
    with user_errors():
        return [(s.title or "New chat", s.session_id) for s in services.sessions.list(owner)]


def render(services: Services, chat: ChatPanel) -> tuple[Callable, list]:
    """Build the sidebar and wire it to the chat panel's session and chatbot.

    Returns:
        ``(refresh, outputs)``: ``refresh(session_id, request) -> chats radio`` for page load and
        after each answer, and the components it updates.
    """
    with gr.Sidebar(label="Chats", open=True, position="left"):
        new_btn = gr.Button("+ New chat", variant="primary")
        chats = gr.Radio(label="Chats", choices=[], value=None, elem_id="chat-list")
        with gr.Accordion("This chat", open=False):
            title = gr.Textbox(label="Rename to", placeholder="a short title", max_lines=1)
            rename_btn = gr.Button("Rename", size="sm")
            fmt = gr.Radio(list(FORMATS), value="markdown", label="Export as")
            export_btn = gr.Button("Export", size="sm")
            exported = gr.File(label="Exported chat", visible=False)
            system = gr.Textbox(label="System prompt for this chat", lines=4, max_lines=10,
                                placeholder=services.settings.system_prompt,
                                info="Empty = the default. It starts the cached prefix, so changing it rebuilds "
                                     "the cache for this chat's documents.")
            system_btn = gr.Button("Save system prompt", size="sm")
            delete_btn = gr.Button("Delete chat", variant="stop", size="sm")

    def refresh(session_id: str | None, request: gr.Request):
        choices = chat_choices(services, owner_of(request))
        return gr.Radio(choices=choices, value=session_id if session_id in {c[1] for c in choices} else None)

    def open_chat(session_id: str | None, request: gr.Request):
        owner = owner_of(request)
        try:
            with user_errors():
                session = services.sessions.get(owner, session_id)
                messages = session.messages
        except SessionNotFound:
            gr.Warning("That chat has expired and its history is gone; start a new one.")
            return None, [], refresh(None, request), ""
        return session_id, to_chatbot(messages, services.settings.path("images")), gr.skip(), session.system_prompt

    def save_system(session_id: str | None, text: str, request: gr.Request):
        if not session_id:
            raise gr.Error("Open a chat first, then give it a system prompt.")
        with user_errors():
            services.sessions.set_system_prompt(owner_of(request), session_id, text or "")
        gr.Info("Saved. The instructions start the cached prefix, so this chat's documents are read again "
                "(the KV cache is rebuilt) on its next question.")

    def rename(session_id: str | None, new_title: str, request: gr.Request):
        if not session_id:
            raise gr.Error("Open a chat first, then rename it.")
        with user_errors():
            services.sessions.rename(owner_of(request), session_id, new_title)
        return refresh(session_id, request), ""

    def delete(session_id: str | None, request: gr.Request):
        if not session_id:
            raise gr.Error("Open a chat first, then delete it.")
        owner = owner_of(request)
        with user_errors():
            services.sessions.delete(owner, session_id)
        services.chat.forget_session(owner, session_id)
        return None, [], refresh(None, request)

    def export(session_id: str | None, kind: str, request: gr.Request):
        if not session_id:
            raise gr.Error("Open a chat first, then export it.")
        with user_errors():
            name, content = export_session(services.sessions.get(owner_of(request), session_id), kind)
        folder = services.settings.path("exports") / session_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(content, encoding="utf-8")
        return gr.File(value=str(path), visible=True)

    private = {"api_visibility": "private"}
    chats.input(open_chat, chats, [chat.session, chat.chatbot, chats, system], **private)
    new_btn.click(lambda: (None, [], gr.Radio(value=None), ""), None, [chat.session, chat.chatbot, chats, system],
                  **private)
    system_btn.click(save_system, [chat.session, system], None, **private)
    rename_btn.click(rename, [chat.session, title], [chats, title], **private)
    title.submit(rename, [chat.session, title], [chats, title], **private)
    delete_btn.click(delete, chat.session, [chat.session, chat.chatbot, chats], **private)
    export_btn.click(export, [chat.session, fmt], exported, **private)
    return refresh, [chats]
