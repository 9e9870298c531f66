"""Source viewer: clicking a citation under an answer opens the page (PDFs: rendered, the quote marked)
and the passage in its paragraph, the quote highlighted. It sits in the documents column, beside the chat."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from backend.chat import SessionNotFound
from backend.services import Services
from components.chat import ChatPanel, cited_source
from components.common import owner_of, user_errors


def passage_html(before: str, quote: str, after: str) -> str:
    """The quote in its paragraph, escaped, the quote in a ``<mark>``."""
    def text(t: str) -> str:
        return html.escape(t).replace("\n", "<br>")

    return (f'<div class="source-passage">{text(before)}<mark id="source-quote">{text(quote)}</mark>'
            f"{text(after)}</div>")


@dataclass
class SourcePanel:
    """The viewer's components, which ``wire`` connects to the chat."""

    box: gr.Column
    heading: gr.Markdown
    image: gr.Image
    passage: gr.HTML
    close: gr.Button


def render() -> SourcePanel:
    """Build the (hidden) viewer where it is called."""
    with gr.Column(visible=False, elem_id="source-viewer") as box:
        with gr.Row(equal_height=True):
            heading = gr.Markdown()
            close = gr.Button("Close", size="sm", scale=0, min_width=80)
        image = gr.Image(type="pil", interactive=False, show_label=False, visible=False, elem_id="source-page",
                         height=520)
        passage = gr.HTML(max_height=260)
    return SourcePanel(box, heading, image, passage, close)


def wire(services: Services, panel: SourcePanel, chat: ChatPanel) -> None:
    """Open the viewer when a citation (or a closest passage) in the Chatbot is clicked; Close hides it."""

    def show(history: list, session_id: str | None, evt: gr.SelectData, request: gr.Request):
        nothing = gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if not session_id or not isinstance(evt.index, int):
            return nothing
        owner = owner_of(request)
        with user_errors():
            try:
                stored = services.sessions.get(owner, session_id).messages
            except SessionNotFound:
                return nothing
            source = cited_source(history, evt.index, stored)
            if source is None:
                return nothing
            view = services.viewer.open(owner, source)
        note = f"\n\n<sub>{view.note}</sub>" if view.note else ""
        return (gr.Column(visible=True), f"**{view.title}**{note}",
                gr.Image(value=view.image, visible=view.image is not None),
                passage_html(view.before, view.quote, view.after))

    chat.chatbot.select(show, [chat.chatbot, chat.session], [panel.box, panel.heading, panel.image, panel.passage],
                        api_visibility="private").then(
        None, js="() => document.getElementById('source-quote')?.scrollIntoView({block: 'nearest'})")
    panel.close.click(lambda: gr.Column(visible=False), None, panel.box, api_visibility="private")
