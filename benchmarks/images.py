"""What an image costs, and what reusing its KV saves, on a vision pair with real shapes: ``models/make_vision.py``'s
``smolvlm`` preset (SmolVLM2-256M's SigLIP-B/16 projector at 512-pixel tiles, 64 tokens a tile, and SmolLM2-135M's
text layers; random weights, so the timings are real and the answers are not).

Usage::

    python benchmarks/images.py [--width 1280 --height 800] [--repeats 3] [--threads N] [--preset smolvlm|tiny]

Through the app's whole backend (``build_services``: the pair in a models folder, the projector paired by its
header), greedy, 16-token answers, one run:

* cold: the first question about a screenshot-sized image in a new chat: the image is preprocessed into tiles
  (idefics3: longest edge 2,048 px, so a 1280 x 800 screenshot is 4 x 3 tiles plus an overview), encoded by
  the vision tower, decoded into the sequence, and its prefix saved;
* reused (live): another question about the same image in a new chat, while the sequence still holds it;
* reused (disk): the same after a restart (new services): the image's prefix is read from its cache file;
* KV bytes per image: the saved image prefix's state, and per image token.

It prints a Markdown table (medians of ``--repeats`` for the warm rows); docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))

from make_vision import write_pair

from backend.config import Settings
from backend.services import build_services

OWNER = "local"


def picture(width: int, height: int) -> str:
    """A screenshot-like image (text-like strokes on white) as a PNG data URL."""
    rng = np.random.default_rng(0)
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    for y in range(20, height - 20, 24):
        x0, x1 = 20, int(rng.integers(width // 3, width - 20))
        pixels[y:y + 10, x0:x1] = rng.integers(0, 90, (10, x1 - x0, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def ask(services, image: str, question: str) -> dict:
    """One question about ``image`` in a new chat; the answer's metrics."""
    sid = services.sessions.create(OWNER)
    done = [e for e in services.chat.stream_turn(OWNER, sid, question, [], images=[image]) if e.kind == "done"][-1]
    return done.data["metrics"]


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--preset", default="smolvlm", help="make_vision's preset: smolvlm (real shapes), or tiny (a "
                                                            "smoke run: every step, in seconds)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="kvc-images-"))
    model, projector = write_pair(work / "models", args.preset)
    settings = Settings(data_dir=work / "data", models_dir=work / "models", model_path=model, auto_download=False,
                        n_ctx=4096, max_tokens=16, temperature=0.0, ignore_eos=True, turn_datetime=False,
                        kv_ram_budget_mb=0, n_threads=args.threads)
    image = picture(args.width, args.height)
    services = build_services(settings)
    try:
        cold = ask(services, image, "What does this screen show?")
        live = [ask(services, image, f"Question {i} about it?") for i in range(args.repeats)]
        entries = [e for e in services.kv_store.entries() if e.n_tokens >= cold["image_tokens"]]
        state_bytes = max(e.state_bytes for e in entries) if entries else 0
    finally:
        services.close()
    disk = []
    for i in range(args.repeats):
        services = build_services(settings)
        try:
            disk.append(ask(services, image, f"After restart {i}?"))
        finally:
            services.close()

    def ttft(rows: list[dict]) -> float:
        return statistics.median(r["ttft_s"] for r in rows)

    print(f"vision pair: {model.name} ({model.stat().st_size / 2**20:.0f} MiB) + {projector.name} "
          f"({projector.stat().st_size / 2**20:.0f} MiB); image {args.width} x {args.height}, "
          f"{cold['image_tokens']} image tokens, prompt {cold['prompt_tokens']} tokens\n")
    print("| question | image encode | TTFT | reused tokens | vs cold |")
    print("|---|---:|---:|---:|---:|")
    print(f"| cold: first question about the image | {cold['image_encode_s']:.2f} s | {cold['ttft_s']:.2f} s | "
          f"{cold['reused_tokens']} | 1.00x |")
    for name, rows in (("reused, live sequence", live), ("reused, from disk after a restart", disk)):
        print(f"| {name} (median of {len(rows)}) | {statistics.median(r['image_encode_s'] for r in rows):.2f} s | "
              f"{ttft(rows):.3f} s | {statistics.median(r['reused_tokens'] for r in rows):.0f} | "
              f"{ttft(rows) / cold['ttft_s']:.3f}x |")
    per_token = state_bytes / cold["image_tokens"] if cold["image_tokens"] else 0
    print(f"\nKV bytes of the image's saved prefix: {state_bytes / 2**20:.1f} MiB "
          f"({per_token / 1024:.1f} KiB per image token, instructions included)")
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
