"""The first read of a document: cold prefill speed through the app, side by side with llama-server built from the
same llama.cpp (``scripts/build_llama_server.sh``), same GGUF, same threads, for flash attention on and off and
``n_batch`` / ``n_ubatch`` 512/512 and 2048/512 (llama-server's own defaults: flash attention auto, 2048/512).

    .venv/bin/python benchmarks/prefill.py [--models bundled,bench] [--lengths 2000,8000] [--runs 3]
        [--questions 20] [--server .venv/bin/llama-server]

For each model and document length, a document of that many tokens (the first SQuAD dev articles' paragraphs) is
uploaded to a fresh data dir and asked about in whole-document mode with no cache and nothing left in the context, as
a user's first question is:
the app's prefill speed is the prefix's tokens over ``metrics.prefix_prefill_s`` (the batch scheduler's prefill,
before the state is saved). Each run deletes the cache first. llama-server gets the very same prefix token ids on
``/completion`` (``cache_prompt`` off, one token to predict) and reports ``timings.prompt_per_second``.
``--questions``: with the bundled model, that many of the article's questions are answered greedily (32 tokens) at
each setting: the table gives how many answers contain a gold answer (SQuAD-normalised), and how many are token for
token those of flash attention off, 512/512 (the setting the app shipped; flash attention sums in another order, so
some greedy answers change): the default is the fastest setting whose answers are as right. The embedding model is
loaded before anything is timed (the memory index embeds every question in its own thread). ``bench`` is
``models/make_synthetic.py``'s bench preset (Qwen3-0.6B's shapes, random weights: its speed is real, its answers
are not compared).

Prints a Markdown table: tokens/s as medians of ``--runs``, and the app's speed over llama-server's at the same
setting; docs/benchmarks.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from answers import normalize
from squad import SQUAD

from backend.config import Settings
from backend.documents import Embedder
from backend.inference import Sampling, bundled_path
from backend.services import build_services

ROOT = Path(__file__).resolve().parent.parent
OWNER = "bench"
SETTINGS = (("off", 512, 512), ("on", 512, 512), ("off", 2048, 512), ("on", 2048, 512))  # flash_attn, n_batch, n_ubatch
GREEDY = Sampling(max_tokens=32, temperature=0.0)


def article(n_chars: int) -> tuple[str, list[tuple[str, list[str]]]]:
    """SQuAD dev paragraphs (first articles first) up to ``n_chars`` characters, and the questions of those
    paragraphs with their gold answers."""
    text, questions = "", []
    for art in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]:
        for p in art["paragraphs"]:
            if len(text) + len(p["context"]) > n_chars:
                return text, questions
            text += p["context"] + "\n\n"
            questions += [(q["question"], [a["text"] for a in q["answers"]]) for q in p["qas"]]
    return text, questions


def contains(answer: str, golds: list[str]) -> bool:
    """A gold answer inside the answer, SQuAD-normalised."""
    return any(normalize(g) and normalize(g) in normalize(answer) for g in golds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_rates(model: Path, text: str, questions: list[tuple[str, list[str]]], setting: tuple, runs: int, n_ctx: int,
              work: Path, embedder: Embedder) -> tuple[list[float], list[int], list[str]]:
    """The app's cold prefill rates (tokens/s), the prefix token ids and the greedy answers at one setting
    (``embedder``: loaded once, shared by every setting's services)."""
    flash, n_batch, n_ubatch = setting
    data = Path(tempfile.mkdtemp(prefix="kvc-prefill-", dir=work))
    settings = Settings(data_dir=data, models_dir=data / "none", model_path=model, auto_download=False,
                        warm_up=False, n_ctx=n_ctx, cag_max_tokens=n_ctx, flash_attn=flash == "on", n_batch=n_batch,
                        n_ubatch=n_ubatch, kv_ram_budget_mb=0)
    svc = build_services(settings, embedder=embedder)
    try:
        source = data / "report.txt"
        source.write_text(text, encoding="utf-8")
        doc = svc.documents.upload(OWNER, source)[0].doc_id
        rates, answers = [], []
        for _ in range(runs):
            svc.kv_store.delete_for_document(doc)
            with svc.engine.lock:
                svc.engine.clear_context()  # nothing live either: every run reads the document from scratch
            got = ask(svc, "What is this document about?", doc)
            m = got["metrics"]
            if m["cache_tier"] != "miss":
                raise RuntimeError(f"expected a cold prefill: {m}")
            rates.append(m["prefix_tokens"] / m["prefix_prefill_s"])
        (entry,) = [e for e in svc.kv_store.entries() if e.doc_ids == (doc,)]
        tokens = svc.kv_store.tokens(entry.key)
        answers = [ask(svc, q, doc)["answer"] for q, _ in questions]
        return rates, tokens, answers
    finally:
        svc.close()
        shutil.rmtree(data, ignore_errors=True)


def ask(svc, question: str, doc: str) -> dict:
    sid = svc.sessions.create(OWNER)
    try:
        for event in svc.chat.stream_turn(OWNER, sid, question, [doc], GREEDY, mode="cag"):
            if event.kind == "done":
                return {"answer": event.text, **event.data}
    finally:
        svc.sessions.delete(OWNER, sid)
        svc.chat.forget_session(OWNER, sid)
    raise RuntimeError("no done event")


def server_rates(server: Path, model: Path, tokens: list[int], setting: tuple, runs: int, n_ctx: int) -> list[float]:
    """llama-server's prompt rates (tokens/s) on ``tokens`` at one setting, ``runs`` times, cache off."""
    flash, n_batch, n_ubatch = setting
    port = free_port()
    threads = str(len(os.sched_getaffinity(0)))
    proc = subprocess.Popen([str(server), "-m", str(model), "--port", str(port), "-t", threads, "-tb", threads,
                             "-c", str(n_ctx), "-np", "1", "-fa", flash, "-b", str(n_batch), "-ub", str(n_ubatch),
                             "--no-webui", "--cache-ram", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        rates = []
        for _ in range(runs):
            r = httpx.post(f"{url}/completion", json={"prompt": tokens, "n_predict": 1, "cache_prompt": False,
                                                      "temperature": 0}, timeout=1800)
            r.raise_for_status()
            rates.append(r.json()["timings"]["prompt_per_second"])
        return rates
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bundled,bench")
    parser.add_argument("--lengths", default="2000,8000", help="document lengths, tokens (about)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--questions", type=int, default=20, help="greedy answers compared (bundled model only)")
    parser.add_argument("--server", type=Path, default=ROOT / ".venv" / "bin" / "llama-server")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvc-prefill-"))
    rows = []
    embedder = Embedder(Settings().embedding_model)  # loaded before anything is timed (the memory index embeds
    # every question in its own thread), once for every setting
    try:
        models = {"bundled": bundled_path(ROOT / "models")}
        for preset in {"bench", "tiny"} & set(args.models.split(",")):  # synthetic (tiny: a smoke run)
            sys.path.insert(0, str(ROOT / "models"))
            from make_synthetic import write_model

            models[preset] = write_model(work / f"{preset}.gguf", preset)
        for name in args.models.split(","):
            for length in (int(x) for x in args.lengths.split(",")):
                text, questions = article(length * 4)  # about 4 characters a token
                questions = questions[: args.questions if name == "bundled" else 0]
                n_ctx = 1024 * (length * 3 // 2 // 1024 + 2)  # room for the bench tokenizer (~1.45 tokens a 4 chars)
                baseline = None
                for setting in SETTINGS:
                    rates, tokens, answers = app_rates(models[name], text, questions, setting, args.runs, n_ctx, work,
                                                       embedder)
                    served = (server_rates(args.server, models[name], tokens, setting, args.runs, n_ctx)
                              if args.server.exists() else [])
                    baseline = answers if baseline is None else baseline
                    same = sum(a == b for a, b in zip(answers, baseline))
                    right = sum(contains(a, golds) for a, (_, golds) in zip(answers, questions))
                    row = (name, len(tokens), setting, statistics.median(rates),
                           statistics.median(served) if served else None,
                           f"{right} / {len(answers)} right, {same} identical" if answers else "-")
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| model | prefix tokens | flash_attn | n_batch / n_ubatch | app tok/s | llama-server tok/s | app / server "
          "| answers (vs off, 512/512) |\n|---|---:|---|---|---:|---:|---:|---|")
    for name, n, (flash, b, ub), app, server, same in rows:
        ratio = f"{app / server:.2f}x" if server else "-"
        print(f"| {name} | {n:,} | {flash} | {b} / {ub} | {app:.0f} | {server:.0f} | {ratio} | {same} |"
              if server else f"| {name} | {n:,} | {flash} | {b} / {ub} | {app:.0f} | - | - | {same} |")
    print(f"\n(medians of {args.runs} runs, {len(os.sched_getaffinity(0))} threads for both)")


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
