"""The preflight's child process: open a model exactly as the engine does, render a chat through its
template, tokenize it, prefill it in one batch and decode a few tokens, then (for a vision model) attach
its projector and encode a probe image, reporting each stage on stdout.

Run as ``python -m backend.inference.probe '<json LoadParams fields + "path">'``. A native fault in
llama.cpp ends this process, not the app; ``faulthandler`` writes the Python stack of the fault to
stderr, which the parent copies into the model's run log. Exit status 0: every stage passed; 3: the
model could not be opened (an ordinary load error, which the in-process load reports itself); 4: libmtmd
refused the projector or the probe image (the model still serves text).
"""

from __future__ import annotations

import faulthandler
import json
import sys

# A conversation that walks the tokenizer through what documents contain: accents, CJK, digits,
# symbols, an emoji, line breaks; long enough that the prefill runs as a batched matrix product.
PROBE_MESSAGES = [
    {"role": "system", "content": "You answer questions about the user's documents.\n\nDocument: Ünïcödé text, "
                                  "中文字符, Ελληνικά, 0123456789, symbols <>&%$#@!?{}[]|~^, an emoji 🙂, and tabs\t"
                                  "and new lines.\nThe probe fact: the river is 42 km long."},
    {"role": "user", "content": "How long is the river? Answer in a few words."},
]
DECODE_TOKENS = 4


def stage(name: str) -> None:
    """Report that ``name`` starts (the parent names the stage a crash happened in)."""
    print(f"stage: {name}", flush=True)


def run(args: dict) -> int:
    """Open, render, tokenize, prefill and decode; returns the exit status."""
    from backend.inference.loader import LoadParams, ModelLoadError, open_model

    path, projector = args.pop("path"), args.pop("projector", None)
    stage("loading the model")
    try:
        opened = open_model(path, LoadParams(**args))
    except ModelLoadError as exc:
        print(f"error: {exc}", flush=True)
        return 3
    stage("rendering the chat template")
    prompt = opened.formatter(messages=PROBE_MESSAGES).prompt
    stage("tokenizing")
    tokens = opened.vocab.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    stage(f"prefilling {len(tokens)} tokens")
    llm = opened.llm
    llm.eval(tokens)
    stage(f"decoding {DECODE_TOKENS} tokens")
    for _ in range(DECODE_TOKENS):
        token = llm.sample(temp=0.0)
        llm.detokenize([token])  # the engine detokenizes every token it streams: exercise that too
        llm.eval([token])
    if projector:
        return probe_image(opened, projector)
    stage("done")
    return 0


def probe_image(opened, projector: str) -> int:
    """Attach the vision projector and encode a small probe image into a fresh context; 4 when libmtmd
    refuses the projector (an ordinary error, reported as "no vision" by the parent), 0 when it worked."""
    import llama_cpp
    import numpy as np

    from backend.inference.projectors import VISION_STAGES
    from backend.inference.types import EngineError
    from backend.inference.vision import MARKER, Projector

    llm = opened.llm
    llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
    stage(VISION_STAGES[0])
    try:
        vision = Projector(llm, projector, opened.params.n_threads or 1)
    except EngineError as exc:
        print(f"error: {exc}", flush=True)
        return 4
    stage(VISION_STAGES[1])
    ramp = np.linspace(0, 255, 96 * 64 * 3).reshape(64, 96, 3).astype(np.uint8)  # 96 x 64 pixels
    prompt = vision.prompt(opened.formatter(messages=[{"role": "user", "content": MARKER + "What is this?"}]).prompt,
                           [ramp])
    try:
        vision.evaluate_all(prompt, 0, opened.params.n_batch)
    except EngineError as exc:
        print(f"error: {exc}", flush=True)
        return 4
    finally:
        prompt.close()
        vision.close()
    stage("done")
    return 0


if __name__ == "__main__":
    faulthandler.enable(sys.stderr)
    sys.exit(run(json.loads(sys.argv[1])))
