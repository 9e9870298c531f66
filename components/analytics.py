"""Analytics panel: plots of the user's answers (TTFT, reused vs prefilled tokens, decode speed, retrieval
time) with totals, filtered by chat and time range; Gradio's native plots (Vega, drawn as SVG)."""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from backend.chat import TIME_RANGES_S, answer_points, since_for, totals
from backend.services import Services
from components.common import human_bytes, owner_of, user_errors

ALL_CHATS = "All chats"
TIME_FORMAT = "%H:%M:%S"  # d3 time format of the time axes
POINT_COLUMNS = ["time", "answer", "chat", "kind", "ttft_s", "decode_tokens_per_s", "retrieval_s"]


def frames(points) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Plot data: one row per answer, and its reused/prefilled tokens as two rows (long form, for stacking)."""
    rows = [{"time": pd.Timestamp(p.at, unit="s"), "answer": i, "chat": p.session_title,
             "kind": f"{p.mode} · {p.cache_tier}", "ttft_s": p.ttft_s, "decode_tokens_per_s": p.decode_tokens_per_s,
             "retrieval_s": p.retrieval_s if p.mode == "rag" else None}
            for i, p in enumerate(points, 1)]
    tokens = [{"answer": f"{i:03d}", "tokens": n, "part": part}  # a category: one bar per answer, in order
              for i, p in enumerate(points, 1)
              for part, n in (("reused", p.reused_tokens), ("prefilled", p.prefill_tokens))]
    return (pd.DataFrame(rows, columns=POINT_COLUMNS),
            pd.DataFrame(tokens, columns=["answer", "tokens", "part"]))


def summary(services: Services, owner: str, points) -> str:
    """The totals line: answers, tokens, cache hit rate, median TTFT and speed, cache bytes by tier."""
    t = totals(points)
    caches = services.caches.list(owner)
    ram = sum(c.bytes for c in caches if c.tier == "ram")
    disk = sum(c.bytes for c in caches)
    ttft = f"{t['median_ttft_s']:.2f} s" if t["median_ttft_s"] is not None else "—"
    speed = f"{t['median_decode_tokens_per_s']:.1f} tok/s" if t["median_decode_tokens_per_s"] else "—"
    return (f"**{t['answers']}** answers · **{t['prompt_tokens']:,}** prompt tokens, "
            f"{t['reuse_ratio']:.0%} reused from caches · **{t['completion_tokens']:,}** generated · "
            f"cache hit rate **{t['cache_hit_rate']:.0%}** of document answers · median TTFT **{ttft}** · "
            f"median decode **{speed}** · KV caches: {human_bytes(disk)} on disk ({len(caches)} entries), "
            f"{human_bytes(ram)} also in RAM")


def render(services: Services):
    """Build the panel; returns its refresh function ``(chat, time_range, request)`` and its inputs/outputs."""
    with gr.Row():
        chat = gr.Dropdown(label="Chat", choices=[ALL_CHATS], value=ALL_CHATS, scale=3)
        span = gr.Radio(list(TIME_RANGES_S), value="All time", label="Time range", scale=3)
        refresh_btn = gr.Button("Refresh", size="sm", scale=1)
    totals_md = gr.Markdown(elem_id="analytics-totals")
    with gr.Row():
        ttft = gr.ScatterPlot(x="time", y="ttft_s", color="kind", title="Time to first token per answer",
                              x_title="answered at", y_title="TTFT (s)", color_title="mode · cache tier",
                              tooltip=["time", "chat", "kind", "ttft_s"], height=280, elem_id="plot-ttft",
                              x_axis_format=TIME_FORMAT)
        tokens = gr.BarPlot(x="answer", y="tokens", color="part", title="Prompt tokens: reused vs prefilled",
                            x_title="answer #", y_title="tokens", color_title="", height=280, elem_id="plot-tokens",
                            sort="x")
    with gr.Row():
        speed = gr.LinePlot(x="time", y="decode_tokens_per_s", title="Decode speed", x_title="answered at",
                            y_title="tokens/s", tooltip=["time", "chat", "decode_tokens_per_s"], height=240,
                            elem_id="plot-decode", x_axis_format=TIME_FORMAT)
        retrieval = gr.ScatterPlot(x="time", y="retrieval_s", title="Retrieval time (RAG answers)",
                                   x_title="answered at", y_title="search (s)", height=240, elem_id="plot-retrieval",
                                   x_axis_format=TIME_FORMAT)

    def refresh(chat_choice: str | None, time_range: str | None, request: gr.Request):
        owner = owner_of(request)
        session_id = None if chat_choice in (None, ALL_CHATS) else chat_choice
        with user_errors():
            choices = [(ALL_CHATS, ALL_CHATS)] + [(s.title or "Untitled", s.session_id)
                                                  for s in services.sessions.list(owner)]
            points = answer_points(services.sessions, owner, session_id, since_for(time_range or "All time", time.time()))
        answers, token_rows = frames(points)
        rag = answers.dropna(subset=["retrieval_s"])
        return (gr.Dropdown(choices=choices, value=chat_choice or ALL_CHATS), summary(services, owner, points),
                answers.dropna(subset=["ttft_s"]), token_rows, answers.dropna(subset=["decode_tokens_per_s"]), rag)

    outputs = [chat, totals_md, ttft, tokens, speed, retrieval]
    for trigger in (refresh_btn.click, chat.input, span.change):
        trigger(refresh, [chat, span], outputs, api_visibility="private")
    return refresh, [chat, span], outputs
