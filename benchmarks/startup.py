"""Start-up, as a user meets it: how long ``python app.py`` takes to serve the page, to answer a question about a
cached document, and to search; side by side with llama-server loading the same GGUF and with a bare Gradio app
(the floor: Python importing Gradio and serving an empty page).

    .venv/bin/python benchmarks/startup.py [--runs 5] [--configs bundled,library,bench] [--documents 1000]
        [--server .venv/bin/llama-server] [--warm-only]

Each configuration gets a data dir made once before its runs, through the app's own services: ``bundled`` (the
bundled SmolLM2, one document of about 2,000 tokens, cached), ``library`` (the same plus ``--documents`` SQuAD
paragraphs, one small document each) and ``bench`` (``models/make_synthetic.py``'s bench preset, Qwen3-0.6B's
shapes, 600 MB, with the same cached document; ``tiny``, the synthetic tiny preset, is for smoke runs). Each run
starts ``python app.py`` as its own process, as a user does, and the clock starts when it is spawned:

* **serving**: ``GET /`` answers 200 (the whole UI);
* **first answer**: the first token of a question about the cached document (whole-document mode), asked through
  ``gradio_client`` as soon as the page answers; the KV cache is restored from disk;
* **first search**: ``search_documents`` for the same question, asked after the answer.

**cold**: the kernel's page cache is dropped before the run (``echo 3 > /proc/sys/vm/drop_caches``, root only;
where that is refused the run says so and counts as warm); **warm**: right after another run. The app stops with
SIGTERM between runs. Side by side, under the same conditions: ``llama-server -m MODEL -c 8192`` (the app's
``n_ctx``) until ``/health`` answers 200, and ``python -c "import gradio; gr.Blocks().launch()"`` until its page answers 200.

Prints a Markdown table of medians (and p95 with 5 runs or more); docs/benchmarks.md quotes it.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from squad import SQUAD, percentile

from backend.config import Settings
from backend.inference import bundled_path
from backend.services import build_services

OWNER = "local"
QUESTION = "What is this document about?"
CAG_MAX_TOKENS = 8192  # the cached document is read whole whatever the model (auto's own limit would cache its chunks)
BARE_GRADIO = ("import gradio as gr, sys\nwith gr.Blocks() as demo:\n    gr.Markdown('hello')\n"
               "demo.launch(server_port=int(sys.argv[1]))\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_page_cache() -> bool:
    """Drop the kernel's page cache (root only); True when it was dropped."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def wait_200(url: str, proc: subprocess.Popen, started: float, timeout_s: float = 300.0) -> float:
    """Seconds from ``started`` until ``url`` answers 200 (polled every 20 ms)."""
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def document_text(tokens: int = 2000) -> str:
    """SQuAD dev paragraphs of one article, about ``tokens`` tokens (4 characters a token)."""
    article = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][0]
    text = ""
    for p in article["paragraphs"]:
        if len(text) > tokens * 4:
            break
        text += p["context"] + "\n\n"
    return text


def prepare(folder: Path, model: Path, documents: int) -> str:
    """A data dir with the cached document and ``documents`` one-paragraph documents; returns the cached id."""
    settings = Settings(data_dir=folder / "data", models_dir=folder / "no-models", model_path=model,
                        auto_download=False, warm_up=False, cag_max_tokens=CAG_MAX_TOKENS)
    services = build_services(settings)
    try:
        source = folder / "report.txt"
        source.write_text(document_text(), encoding="utf-8")
        row, _ = services.documents.upload(OWNER, source)
        if not services.primer.cache_if_possible(OWNER, row.doc_id):
            raise RuntimeError("the document was not cached")
        paragraphs = [(f"{a['title']}-{i:03d}.txt", p["context"])
                      for a in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
                      for i, p in enumerate(a["paragraphs"])][:documents]
        for name, text in paragraphs:
            path = folder / name
            path.write_text(text, encoding="utf-8")
            services.documents.upload(OWNER, path)
            path.unlink()
        return row.doc_id
    finally:
        services.close()


def app_run(folder: Path, model: Path, doc_id: str) -> dict[str, float]:
    """One start of ``python app.py``: seconds from spawn to serving, first answer token, first search."""
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "KVC_DATA_DIR": str(folder / "data"), "KVC_MODELS_DIR": str(folder / "no-models"),
           "KVC_MODEL_PATH": str(model), "KVC_AUTO_DOWNLOAD": "false", "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "KVC_PORT": str(port), "KVC_MAX_TOKENS": "16",
           "KVC_TEMPERATURE": "0", "KVC_CAG_MAX_TOKENS": str(CAG_MAX_TOKENS)}
    log = open(folder / "app.log", "a")  # noqa: SIM115 (closed below)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=folder, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        out = {"serving": wait_200(f"http://127.0.0.1:{port}/", proc, started)}
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        session = client.predict(api_name="/create_session")
        job = client.submit(session, QUESTION, [doc_id], "cag", api_name="/chat")
        for update in job:
            if update.get("text") and "answer" not in out:
                out["answer"] = time.perf_counter() - started
        final = job.outputs()[-1]
        if final["metrics"]["cache_tier"] != "disk":
            raise RuntimeError(f"the cached document was not restored from disk: {final['metrics']}")
        out.setdefault("answer", time.perf_counter() - started)
        client.predict(QUESTION, [doc_id], 3, api_name="/search_documents")
        out["search"] = time.perf_counter() - started
        return out
    finally:
        stop(proc)
        log.close()


def server_run(server: Path, model: Path) -> float:
    """Seconds from spawning llama-server on ``model`` until ``/health`` answers 200."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([str(server), "-m", str(model), "--port", str(port), "-t", str(os.cpu_count() or 2),
                             "-c", "8192", "--no-webui"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return wait_200(f"http://127.0.0.1:{port}/health", proc, started)
    finally:
        stop(proc)


def gradio_run() -> float:
    """Seconds from spawning a bare Gradio app until its page answers 200."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BARE_GRADIO, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    try:
        return wait_200(f"http://127.0.0.1:{port}/", proc, started)
    finally:
        stop(proc)


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) >= 5:
        return f"{statistics.median(values):.2f} / {percentile(values, 0.95):.2f}"
    return f"{statistics.median(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold and warm runs each")
    parser.add_argument("--configs", default="bundled,library,bench")
    parser.add_argument("--documents", type=int, default=1000, help="documents in the library configuration")
    parser.add_argument("--server", type=Path, default=ROOT / ".venv" / "bin" / "llama-server")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold runs (a smoke run)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvc-startup-"))
    rows = []
    try:
        models = {"bundled": bundled_path(ROOT / "models")}
        for preset in {"bench", "tiny"} & set(args.configs.split(",")):
            from make_synthetic import write_model

            models[preset] = write_model(work / f"{preset}.gguf", preset)
        for config in args.configs.split(","):
            model = models.get(config, models["bundled"])
            folder = work / config
            folder.mkdir()
            started = time.perf_counter()
            doc_id = prepare(folder, model, args.documents if config == "library" else 0)
            print(f"{config}: data dir ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            for temperature in ("warm",) if args.warm_only else ("cold", "warm"):
                times: dict[str, list[float]] = {"serving": [], "answer": [], "search": [], "server": [],
                                                 "gradio": []}
                dropped = True
                for _ in range(args.runs):
                    for what, run in (("app", lambda f=folder, m=model, d=doc_id: app_run(f, m, d)),
                                      ("server", lambda m=model: server_run(args.server, m)),
                                      ("gradio", gradio_run)):
                        if what == "server" and not args.server.exists():
                            continue
                        if temperature == "cold":
                            dropped = drop_page_cache() and dropped
                        got = run()
                        if what == "app":
                            for key, value in got.items():
                                times[key].append(value)
                        else:
                            times[what].append(got)
                label = temperature if dropped or temperature == "warm" else "cold (page cache NOT dropped)"
                rows.append((config, label, times))
                print(f"{config} {label}: " + ", ".join(f"{k} {cell(v)}" for k, v in times.items()), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    unit = "median / p95, s" if args.runs >= 5 else "median, s"
    print("\n| configuration | page cache | app serving | first answer (cached document) | first search | "
          "llama-server ready | bare Gradio serving |\n|---|---|---:|---:|---:|---:|---:|")
    for config, label, t in rows:
        print(f"| {config} | {label} | {cell(t['serving'])} | {cell(t['answer'])} | {cell(t['search'])} | "
              f"{cell(t['server'])} | {cell(t['gradio'])} |")
    print(f"\n({unit}; {args.runs} runs each; seconds from spawning the process; {os.cpu_count()} cores)")


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
