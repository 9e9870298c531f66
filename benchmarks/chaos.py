"""Kill the app at random moments and check that nothing it acknowledged is lost.

A mixed workload runs through the app's API (gradio_client), as a client would: uploads (with caching
on upload), chat turns, document deletes and session renames. The app's whole process group, its
embedded redis-server too, is killed with SIGKILL at a random moment, N times, and started again on the
same data dir. After each restart every write the API had acknowledged is checked:

* each acknowledged upload is listed, its text is readable and its own unique word finds it by search,
  and its file is on disk; each acknowledged delete stays deleted;
* each finished chat turn (question and answer) is in its session, and each acknowledged rename holds;
* no ``*.tmp`` file is left in the upload and KV-cache folders;

and at the end, with the app stopped, every KV-cache entry on disk passes its checksum, and the LanceDB
chunks agree with the documents (no orphan chunks, no document without its chunks). The app's own
start-up check (``backend.documents.recovery``, ``KVCacheStore.sweep``) logs what it swept; those lines
are counted.

    .venv/bin/python benchmarks/chaos.py                       # 50 kills, the tiny synthetic model
    .venv/bin/python benchmarks/chaos.py --kills 5 --max-minutes 5

Prints one table (docs/benchmarks.md, "Kills"). Exits 1 when an acknowledged write was lost.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

WORDS = ["harbor", "lighthouse", "keeper", "lamp", "tide", "ship", "engineer", "granite", "stair", "beacon", "fog", "signal", "island", "rock", "storm", "night", "watch", "oil", "lens", "tower"]


@dataclass
class Acked:
    """What the API acknowledged so far."""

    docs: dict[str, str] = field(default_factory=dict)  # doc_id -> its unique word
    deleted: set[str] = field(default_factory=set)
    turns: dict[str, list[str]] = field(default_factory=dict)  # session id -> questions answered, in order
    titles: dict[str, set[str]] = field(default_factory=dict)  # session id -> the acknowledged title, and any
    # tried after it: a call cut short by the kill may or may not have been written, so either may be there
    maybe_deleted: set[str] = field(default_factory=set)  # deletes cut short: the document may be gone
    renamed: set[str] = field(default_factory=set)  # sessions with an acknowledged rename
    renames: int = 0  # acknowledged renames


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data: Path, model: Path, port: int, log) -> tuple[subprocess.Popen, float]:
    """Start ``app.py`` in its own process group; returns it and the seconds until its page answered."""
    env = {**os.environ, "KVC_DATA_DIR": str(data), "KVC_MODEL_PATH": str(model), "GRADIO_SERVER_PORT": str(port),
           "KVC_AUTO_DOWNLOAD": "false", "HF_HUB_OFFLINE": "1", "KVC_MAX_TOKENS": "24", "KVC_N_CTX": "4096",
           "KVC_N_THREADS": "1", "KVC_UPLOADS_PER_DAY": "1000000", "KVC_QUESTIONS_PER_MINUTE": "1000000",
           "KVC_QUOTA_DOCUMENTS": "1000000", "KVC_TEMPERATURE": "0"}
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, cwd=data.parent, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log.name}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc, time.monotonic() - began
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


def document(folder: Path, n: int, rng: random.Random) -> tuple[Path, str]:
    """A new text document with a word no other document has; returns its path and that word."""
    word = f"chaosword{n:05d}x{rng.randrange(10**6):06d}"
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(60)) + "." for _ in range(rng.randint(2, 30))]
    paragraphs.insert(rng.randrange(len(paragraphs) + 1), f"The secret word of this document is {word}.")
    path = folder / f"doc{n:05d}.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    return path, word


def workload(url: str, acked: Acked, folder: Path, rng: random.Random, stop: threading.Event,
             counter: list[int]) -> None:
    """Upload, ask, delete and rename through the API until the app dies or ``stop`` is set; record each
    acknowledged write in ``acked`` (only once its call has returned)."""
    from gradio_client import Client, handle_file

    try:
        client = Client(url, verbose=False)
        while not stop.is_set():
            op = rng.choices(["upload", "chat", "delete", "rename"], [4, 4, 1, 1])[0]
            if op == "upload":
                counter[0] += 1
                path, word = document(folder, counter[0], rng)
                row = client.predict(handle_file(str(path)), "", rng.random() < 0.5, "", api_name="/upload_document")
                acked.docs[row["doc_id"]] = word
            elif op == "chat":
                sid = rng.choice([*acked.turns, None]) if acked.turns else None
                if sid is None:
                    sid = client.predict(api_name="/create_session")
                live = [d for d in acked.docs if d not in acked.deleted]
                question = f"What is the secret word? ({rng.randrange(10**9)})"
                client.predict(sid, question, rng.sample(live, min(len(live), 1)), "auto", api_name="/chat")
                acked.turns.setdefault(sid, []).append(question)
            elif op == "delete":
                live = [d for d in acked.docs if d not in acked.deleted]
                if live:
                    doomed = rng.choice(live)
                    acked.maybe_deleted.add(doomed)
                    client.predict(doomed, api_name="/delete_document")
                    acked.deleted.add(doomed)
            elif acked.turns:
                sid = rng.choice(list(acked.turns))
                title = f"renamed {rng.randrange(10**6)}"
                acked.titles.setdefault(sid, set()).add(title)
                client.predict(sid, title, api_name="/rename_session")
                acked.titles[sid] = {title}
                acked.renamed.add(sid)
                acked.renames += 1
    except Exception:  # noqa: BLE001 - the app was killed under a call: that write was never acknowledged
        return


def check(url: str, data: Path, acked: Acked) -> list[str]:
    """Every acknowledged write, checked through the API (and the upload files on disk); returns the losses."""
    from gradio_client import Client

    client, lost = Client(url, verbose=False), []
    listed = {d["doc_id"] for d in client.predict(api_name="/list_documents")}
    for doc_id, word in acked.docs.items():
        if doc_id in acked.deleted:
            if doc_id in listed:
                lost.append(f"deleted document {doc_id} is back")
            continue
        if doc_id not in listed:
            if doc_id not in acked.maybe_deleted:
                lost.append(f"upload {doc_id} is not listed")
            continue
        pages = client.predict(doc_id, api_name="/get_document_text")["pages"]
        if not any(word in page["text"] for page in pages):
            lost.append(f"upload {doc_id} lost its text")
        hits = client.predict(word, [doc_id], 1, api_name="/search_documents")
        if not hits or hits[0]["doc_id"] != doc_id:
            lost.append(f"upload {doc_id} is not found by search")
        if not any((data / "uploads" / doc_id).glob("doc*.txt")):
            lost.append(f"the file of upload {doc_id} is gone")
    for sid, questions in acked.turns.items():
        history = client.predict(sid, api_name="/get_history")
        said = iter(m["content"] for m in history["messages"] if m["role"] == "user")
        if not all(q in said for q in questions):  # in order; a turn cut short may have been saved between them
            lost.append(f"session {sid} lost a finished turn")
        if sid in acked.renamed and history["title"] not in acked.titles[sid]:
            lost.append(f"session {sid} lost its new title")
    temps = [p for folder in ("uploads", "kvcache") for p in (data / folder).rglob("*.tmp")]
    lost += [f"temp file left: {p}" for p in temps]
    return lost


def final_check(data: Path, model: Path) -> tuple[int, int, int]:
    """With the app stopped: (KV entries failing their checksum, chunk rows without a document,
    documents whose chunk count is wrong), read straight from the data dir."""
    from backend.config import Settings
    from backend.documents import Store
    from backend.kvcache import KVCacheStore

    settings = Settings(data_dir=data, model_path=model)
    kv = KVCacheStore(settings.path("kvcache"), 1 << 40)
    bad_entries = sum(1 for e in kv.entries() if kv.load(e.key, e.fingerprint, kv.tokens(e.key)) is None)
    store = Store(settings.path("lancedb"), 384)
    rows, counts = {r.doc_id: r for r in store.all_documents()}, store.chunk_counts()
    orphans = sum(n for d, n in counts.items() if d not in rows)
    wrong = sum(1 for d, r in rows.items() if counts.get(d, 0) != r.n_chunks)
    return bad_entries, orphans, wrong


SWEEPS = re.compile(r"start-up check of the documents: Recovery\(orphan_chunks=(\d+), reembedded=\d+, reindexed=(\d+), "
                    r"orphan_folders=(\d+), temp_files=(\d+)|KV cache folder: deleted (\d+) files")


def main() -> int:
    """Run the kills and print the table; 1 when anything acknowledged was lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--max-minutes", type=float, default=40.0, help="stop killing after this long")
    parser.add_argument("--model", type=Path, help="GGUF to load (default: the tiny synthetic model)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="data dir to use (default: a new temp dir)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    quiet = threading.excepthook  # gradio_client's own threads die with the app at each kill: expected, not news
    threading.excepthook = lambda hook: None if issubclass(hook.exc_type, httpx.HTTPError) else quiet(hook)
    work = Path(tempfile.mkdtemp(prefix="kvc-chaos-"))
    data, files = args.data or work / "data", work / "files"
    files.mkdir()
    if args.model is None:
        from make_synthetic import write_model

        args.model = write_model(work / "tiny.gguf", "tiny")
    port, acked, counter = free_port(), Acked(), [0]
    restarts, lost, kills = [], [], 0
    log = open(work / "app.log", "a")  # noqa: SIM115 - one log for every run of the app
    deadline = time.monotonic() + args.max_minutes * 60
    proc, _ = start(data, args.model, port, log)
    while kills < args.kills and time.monotonic() < deadline:
        stop = threading.Event()
        worker = threading.Thread(target=workload, args=(f"http://127.0.0.1:{port}/", acked, files, rng, stop,
                                                         counter), daemon=True)
        worker.start()
        time.sleep(rng.uniform(0.5, 8.0))
        os.killpg(proc.pid, signal.SIGKILL)  # the app and its redis-server, mid-whatever
        proc.wait()
        stop.set()
        worker.join(timeout=30)
        kills += 1
        proc, seconds = start(data, args.model, port, log)
        restarts.append(seconds)
        problems = check(f"http://127.0.0.1:{port}/", data, acked)
        lost += problems
        print(f"kill {kills}: restart {seconds:.1f} s, {len(acked.docs)} uploads, "
              f"{sum(map(len, acked.turns.values()))} turns acknowledged, {len(problems)} lost", flush=True)
        for problem in problems:
            print("  LOST:", problem, flush=True)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    log.close()
    bad_entries, orphan_chunks, wrong = final_check(data, args.model)
    swept = [m.groups() for m in SWEEPS.finditer((work / "app.log").read_text(errors="replace"))]
    chunks_swept = sum(int(g[0]) for g in swept if g[0])
    folders_swept = sum(int(g[2]) for g in swept if g[2])
    reindexed = sum(int(g[1]) for g in swept if g[1])
    kv_swept = sum(int(g[4]) for g in swept if g[4])
    p95 = statistics.quantiles(restarts, n=20)[-1] if len(restarts) >= 2 else restarts[0]
    print(f"\n| kills survived | acknowledged uploads | acknowledged deletes | finished turns | renames "
          f"| acknowledged writes lost | swept at start (chunks / folders / KV files / re-indexed) "
          f"| KV entries failing checksum | orphan chunks / wrong counts at the end | restart p50 / p95 |\n"
          f"|---:|---:|---:|---:|---:|---:|---|---:|---|---|\n"
          f"| {kills} | {len(acked.docs)} | {len(acked.deleted)} | {sum(map(len, acked.turns.values()))} "
          f"| {acked.renames} | **{len(lost)}** | {chunks_swept} / {folders_swept} / {kv_swept} / {reindexed} "
          f"| {bad_entries} | {orphan_chunks} / {wrong} | {statistics.median(restarts):.1f} s / {p95:.1f} s |")
    print(f"\nlog: {work / 'app.log'}")
    return 1 if lost or bad_entries or orphan_chunks or wrong else 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
