"""Logs panel: one model run's log (llama.cpp's own and the app's), filtered by level and text,
refreshed every few seconds by a ``gr.Timer`` while the panel is open and "Follow" is ticked. Admins only: others
get nothing."""

from __future__ import annotations

import gradio as gr

from backend.inference import LEVELS
from backend.services import Services
from components.common import human_bytes, is_admin

REFRESH_S = 2.0


def run_choices(services: Services) -> list[tuple[str, str]]:
    """(label, run_id) pairs for the runs dropdown, newest first."""
    return [(f"{r.run_id}{' (current)' if r.current else ''} · {human_bytes(r.size_bytes)}", r.run_id)
            for r in services.run_logs.runs()]


def render(services: Services, panel: gr.Accordion):
    """Build the panel.

    Args:
        services: the app's services.
        panel: the accordion it sits in: "Follow" polls only while it is open, so a closed panel costs
            no request every few seconds in every open tab.

    Returns:
        ``(refresh, outputs)``: app.py runs ``refresh() -> (runs dropdown, log text)`` into
        ``outputs`` on page load.
    """
    with gr.Row():
        run = gr.Dropdown(label="Model run", choices=[], value=None, scale=3)  # filled on page load, for admins
        level = gr.Radio(list(LEVELS), value="INFO", label="Level and above", scale=3)
        search = gr.Textbox(label="Search", placeholder="text a line must contain", scale=2)
        follow = gr.Checkbox(True, label="Follow (refresh every 2 s)", scale=1)
    text = gr.Code(label="Log", language=None, lines=18, max_lines=18, interactive=False)
    timer = gr.Timer(REFRESH_S, active=False)

    def show(run_id: str | None, lvl: str, needle: str, request: gr.Request) -> str:
        if not is_admin(services, request):
            return ""
        try:
            return "\n".join(services.run_logs.read(run_id or None, lvl, 400, needle or ""))
        except ValueError as exc:
            return str(exc)

    def refresh(request: gr.Request):
        if not is_admin(services, request):
            return gr.Dropdown(choices=[], value=None), ""
        runs = run_choices(services)
        current = services.run_logs.current or (runs[0][1] if runs else None)
        return gr.Dropdown(choices=runs, value=current), show(current, "INFO", "", request)

    inputs = [run, level, search]
    for control in (run, level):
        control.change(show, inputs, text, api_visibility="private", show_progress="hidden")
    search.submit(show, inputs, text, api_visibility="private", show_progress="hidden")
    timer.tick(show, inputs, text, api_visibility="private", show_progress="hidden")
    follow.change(lambda on: gr.Timer(active=on), follow, timer, api_visibility="private")
    panel.expand(lambda on: gr.Timer(active=on), follow, timer, api_visibility="private")
    panel.collapse(lambda: gr.Timer(active=False), None, timer, api_visibility="private")
    return refresh, [run, text]
