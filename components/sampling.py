"""Sampling panel: temperature, top_p, top_k, min_p, repeat penalty, max_tokens and seed for the
next answers; switching thinking on or off loads that mode's recommended values."""

from __future__ import annotations

import gradio as gr

from backend.config import QWEN3_SAMPLING
from backend.inference import Sampling
from backend.services import Services

FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens", "seed")


def render(services: Services) -> list[gr.components.Component]:
    """Build the panel (in an accordion); returns its inputs in ``FIELDS`` order."""
    s = services.settings
    with gr.Accordion("Sampling", open=False):
        gr.Markdown("Defaults follow the model's recommendations where known (Qwen3: temperature 0.7, top_p 0.8 "
                    "without thinking; 0.6 and 0.95 with it). Temperature 0 is greedy.")
        with gr.Row():
            inputs = [
                gr.Slider(0.0, 2.0, s.temperature, step=0.05, label="temperature"),
                gr.Slider(0.05, 1.0, s.top_p, step=0.05, label="top_p"),
                gr.Slider(0, 200, s.top_k, step=1, label="top_k", info="0 = off"),
                gr.Slider(0.0, 1.0, s.min_p, step=0.01, label="min_p"),
            ]
        with gr.Row():
            inputs += [
                gr.Slider(0.8, 2.0, s.repeat_penalty, step=0.05, label="repeat penalty", info="1 = off"),
                gr.Slider(1, max(8192, s.max_tokens), s.max_tokens, step=1, label="max_tokens",
                          info="most tokens per answer"),
                gr.Number(s.seed, label="seed", precision=0, info="-1 = random"),
            ]
    return inputs


def recommended(thinking: str) -> tuple:
    """Slider values for a thinking choice (``on``/``off``/``default``): Qwen3's recommendations;
    ``default`` keeps what is set."""
    if thinking not in QWEN3_SAMPLING:
        return tuple(gr.skip() for _ in FIELDS[:4])
    preset = QWEN3_SAMPLING[thinking]
    return tuple(preset[name] for name in FIELDS[:4])


def to_sampling(values: tuple) -> Sampling:
    """The panel's values (``FIELDS`` order) as ``Sampling``."""
    v = dict(zip(FIELDS, values))
    return Sampling(temperature=float(v["temperature"]), top_p=float(v["top_p"]), top_k=int(v["top_k"]),
                    min_p=float(v["min_p"]), repeat_penalty=float(v["repeat_penalty"]),
                    max_tokens=int(v["max_tokens"]), seed=int(v["seed"] if v["seed"] is not None else -1))
