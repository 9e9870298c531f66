"""Soak: N signed-in users for M minutes against ``python app.py`` as a user runs it, sampling what grows.

    .venv/bin/python benchmarks/soak.py                              # 8 users, 60 minutes, the bundled SmolLM2
    .venv/bin/python benchmarks/soak.py --users 3 --minutes 6 --preset bench

The app runs as its own process on loopback (its embedded Redis a child of it), with sign-in on, rate limits off
(they would refuse this load by design) and the clean-up after deletes at ``--purge-delay`` seconds. Each user
(a fixed seed per user) loops through a day's work over the HTTP API (``gradio_client``): uploads documents of
their own (a generated Markdown file with facts and a unique marker, and real files from ``../shared/testdata``,
some large), caches them, asks about them (whole-document and retrieval, follow-ups in the same chat), switches
to a new chat every few turns, exports one, deletes old chats and old documents. Every ``--sample`` seconds (30) it
records: the app's RSS with its children's (redis-server), open file descriptors and threads, bytes under each
folder of the data dir, LanceDB table versions and fragments, Redis ``used_memory``, the KV RAM tier's bytes.

At the end every user's chats and documents are checked (exactly their own, every question in order with its
answer, nothing lost); then every document is deleted and, after the clean-up, the data dir must hold none of
their bytes (uploads, chunks, caches: no file holds a document's marker, no cache entry names it).

Writes ``--out``/soak.csv (the samples), soak-turns.csv and soak.png (memory, descriptors and threads, disk,
TTFT p95 per window against time) and prints per 5-minute window p50/p95 TTFT and errors, and the checks against
the first window after ``--warm-up`` minutes (10): RSS growth, descriptors and threads, TTFT p95 last/first.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "models")]
TESTDATA = ROOT.parent / "shared" / "testdata"

from gradio_client import Client, handle_file
from soak_figures import chart, report, sample, windows

from backend.access.auth import Users
from backend.inference import bundled_path

PASSWORD = "soak-test-password"
ADMIN = "soakadmin"
REAL_FILES = [TESTDATA / "pdf" / "pypdf_crazyones.pdf", TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf",
              TESTDATA / "docx" / "pandoc_headers.docx", TESTDATA / "md_txt" / "pandoc_testsuite.md",
              TESTDATA / "pdf" / "pdfjs_tracemonkey.pdf"]  # the last one large (14 pages, 1 MB)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(data: Path, model: Path, users: Path, port: int, purge_s: float, log: Path) -> subprocess.Popen:
    """``python app.py`` on loopback, serving once ``GET /`` answers."""
    env = {**os.environ, "KVC_DATA_DIR": str(data), "KVC_MODEL_PATH": str(model), "KVC_USERS_FILE": str(users),
           "GRADIO_SERVER_PORT": str(port), "KVC_HOST": "127.0.0.1", "KVC_AUTO_DOWNLOAD": "false",
           "HF_HUB_OFFLINE": "1", "KVC_QUESTIONS_PER_MINUTE": "0", "KVC_UPLOADS_PER_DAY": "0",
           "KVC_MAX_CONCURRENT_TURNS": "0", "KVC_QUOTA_DOCUMENTS": "0", "KVC_QUOTA_STORED_MB": "0",
           "KVC_PURGE_DELAY_S": str(purge_s), "KVC_MAX_TOKENS": "32", "KVC_ADMINS": f'["{ADMIN}"]'}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], env=env, stdout=log.open("a"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the app did not serve within 300 s; see {log}")


@dataclass
class User:
    """One user's script and what it did."""

    name: str
    rng: random.Random
    chats: dict[str, list[str]] = field(default_factory=dict)  # session id -> questions asked, in order (live)
    docs: dict[str, str] = field(default_factory=dict)  # doc_id -> its marker ("" for a real file)
    turns: list[tuple[float, float | None, str]] = field(default_factory=list)  # (time, TTFT s or None, error)
    markers: list[str] = field(default_factory=list)  # every marker this user ever uploaded
    client_losses: list[str] = field(default_factory=list)  # answers saved by the app, lost by gradio_client


def own_document(folder: Path, user: User, n: int) -> tuple[Path, str]:
    """A Markdown document only this user has: facts to ask about and a unique marker."""
    marker = f"soakmark{user.name}x{n}x{user.rng.randrange(10**9)}"
    path = folder / f"{user.name}-notes-{n}.md"
    path.write_text(f"# Notes {n} of {user.name}\n\nThe code word of these notes is {marker}.\n\n" + "\n\n".join(
        f"Item {i} of part {n} is kept in drawer {(i * 7 + n) % 13}; it was filed on day {i + n}." for i in range(30)),
        encoding="utf-8")
    return path, marker


TURN_LIMIT_S = 600.0  # a turn whose end has not reached the client by then is an error (and the user goes on)


def turn(client: Client, user: User, sid: str, question: str, doc_ids: list[str], mode: str, started: float) -> None:
    """One question; its client-side TTFT (submit to first streamed text, polled every 20 ms) or its error is
    recorded. The job is polled rather than iterated, ``job.result()`` raises the job's own failure, and
    ``TURN_LIMIT_S`` ends a turn that never ends.

    A job ``gradio_client`` cancels by itself is checked against the app: ``gradio_client`` (2.7) keeps one event
    stream per client; when the server closes it (the session's last event ended) just as a new job registers under
    it, the reader ends and the new job is cancelled, though the app received, answered and saved it (two soaks
    lost one answer each this way). When the chat's history holds the question and an answer after it, the turn is
    counted in ``user.client_losses``, not as an app error; otherwise it is an error."""
    sent = time.perf_counter()
    first = None
    try:
        job = client.submit(sid, question, doc_ids, mode, api_name="/chat")
        while not job.done():
            if first is None and any(u.get("text") for u in job.outputs()):
                first = time.perf_counter() - sent
            if time.perf_counter() - sent > TURN_LIMIT_S:
                job.cancel()
                raise TimeoutError(f"the answer's end did not reach the client in {TURN_LIMIT_S:.0f} s")
            time.sleep(0.02)
        try:
            job.result()  # the job's own failure, if any
        except concurrent.futures.CancelledError:
            if not saved_by_the_app(client, sid, question):
                raise
            user.client_losses.append(f"{user.name} at {(time.monotonic() - started) / 60:.1f} min: {question}")
            first = None
        if first is None and any(u.get("text") for u in job.outputs()):
            first = time.perf_counter() - sent
        user.chats[sid].append(question)
        user.turns.append((time.monotonic() - started, first, ""))
    except Exception as exc:  # noqa: BLE001 (an error is a result of the soak: counted per window)
        user.turns.append((time.monotonic() - started, None, f"chat: {type(exc).__name__}: {exc}"[:300]))


def saved_by_the_app(client: Client, sid: str, question: str, wait_s: float = 120.0) -> bool:
    """Whether the app saved ``question`` with an answer after it in chat ``sid`` (waited for up to ``wait_s``
    seconds: the answer may still be streaming)."""
    deadline = time.monotonic() + wait_s
    while True:
        messages = client.predict(sid, api_name="/get_history")["messages"]
        roles = [(m["role"], m["content"]) for m in messages]
        asked = [i for i, (role, content) in enumerate(roles) if role == "user" and content == question]
        if asked and any(role == "assistant" for role, _ in roles[asked[-1] + 1:]):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2)


def connect(url: str, name: str, tries: int = 10) -> Client:
    """A signed-in ``gradio_client`` for this user; the sign-in retried with a growing pause (eight users signing in
    while the app loads its parts can time out the first tries)."""
    for attempt in range(tries):
        try:
            return Client(url, auth=(name, PASSWORD), verbose=False)
        except Exception:  # retried; the last one raises
            if attempt == tries - 1:
                raise
            time.sleep(2 + 2 * attempt)
    raise AssertionError("unreachable")


def run_user(url: str, user: User, folder: Path, until: float, started: float) -> None:
    """The user's day (see the module docstring), until ``until`` (monotonic seconds)."""
    time.sleep(3 * int(user.name.removeprefix("user") or 0))  # they arrive a few seconds apart, as people do
    client = connect(url, user.name)
    n = 0

    def upload(path: Path, marker: str) -> None:
        try:
            doc = client.predict(handle_file(str(path)), "", True, api_name="/upload_document")
            user.docs[doc["doc_id"]] = marker
        except Exception as exc:  # noqa: BLE001
            user.turns.append((time.monotonic() - started, None, f"upload: {exc}"[:300]))

    path, marker = own_document(folder, user, n)
    user.markers.append(marker)
    upload(path, marker)
    upload(REAL_FILES[user.rng.randrange(len(REAL_FILES))], "")
    sid = client.predict(api_name="/create_session")
    user.chats[sid] = []
    step = 0
    while step < 2 or time.monotonic() < until:  # a question and its follow-up even when set-up took all the time
        step += 1
        docs = list(user.docs)
        mine = [d for d, m in user.docs.items() if m] or docs
        if step % 2:
            turn(client, user, sid, f"[{user.name} {step}] Which drawer holds item {step % 30}?", mine[-1:],
                 "auto", started)
        else:
            turn(client, user, sid, f"[{user.name} {step}] And on which day was it filed?", mine[-1:],
                 user.rng.choice(["auto", "rag"]), started)
        try:
            if step % 3 == 0 and docs:
                turn(client, user, sid, f"[{user.name} {step}] What is this document about?",
                     [user.rng.choice(docs)], "rag", started)
            if step % 6 == 0:  # a new chat
                sid = client.predict(api_name="/create_session")
                user.chats[sid] = []
            if step % 10 == 0:
                client.predict(next(iter(user.chats)), "markdown", api_name="/export_session")
            if step % 12 == 0 and len(user.chats) > 2:  # the oldest chat deleted
                old = next(iter(user.chats))
                client.predict(old, api_name="/delete_session")
                del user.chats[old]
            if step % 8 == 0:  # a new document, cached on upload
                n += 1
                if n % 2:
                    path, marker = own_document(folder, user, n)
                    user.markers.append(marker)
                    upload(path, marker)
                else:
                    upload(REAL_FILES[user.rng.randrange(len(REAL_FILES))], "")
            if step % 8 == 4 and len(user.docs) > 2:  # the oldest document deleted
                old = next(iter(user.docs))
                client.predict(old, api_name="/delete_document")
                del user.docs[old]
        except Exception as exc:  # noqa: BLE001
            user.turns.append((time.monotonic() - started, None, f"step {step}: {exc}"[:300]))


def check_users(url: str, users: list[User]) -> list[str]:
    """Each user's chats and documents: exactly their own, every question in order with its answer."""
    problems = []
    names = {u.name for u in users}
    for u in users:
        client = connect(url, u.name)
        listed = {s["session_id"] for s in client.predict(api_name="/list_sessions")}
        if listed != set(u.chats):
            problems.append(f"{u.name}: {len(listed)} chats listed, {len(u.chats)} expected")
        for sid, questions in u.chats.items():
            messages = client.predict(sid, api_name="/get_history")["messages"]
            asked = [m["content"] for m in messages if m["role"] == "user"]
            answered = [m for m in messages if m["role"] == "assistant"]
            if asked != questions or len(answered) != len(questions):
                problems.append(f"{u.name} {sid[:8]}: {len(asked)}/{len(answered)} saved, {len(questions)} asked")
            if any(f"[{o} " in m["content"] for m in messages for o in names - {u.name}):
                problems.append(f"{u.name} {sid[:8]}: holds another user's messages")
        docs = {d["doc_id"] for d in client.predict(api_name="/list_documents")}
        if docs != set(u.docs):
            problems.append(f"{u.name}: {len(docs)} documents listed, {len(u.docs)} expected")
    return problems


def delete_everything(url: str, users: list[User]) -> None:
    for u in users:
        client = connect(url, u.name)
        for doc_id in list(u.docs):
            client.predict(doc_id, api_name="/delete_document")
        for sid in list(u.chats):
            client.predict(sid, api_name="/delete_session")


def leftovers(data: Path, users: list[User]) -> list[str]:
    """Bytes of deleted documents still in the data dir: uploads, cache entries, files holding a marker."""
    found = [f"uploads/{p.name}" for p in (data / "uploads").iterdir()] if (data / "uploads").exists() else []
    found += [f"kvcache/{p.name}" for p in (data / "kvcache").glob("*.kv")]
    markers = [m.encode() for u in users for m in u.markers]
    for path in data.rglob("*"):
        if path.is_file() and path.suffix not in (".sock",):
            blob = path.read_bytes()
            found += [f"{path.relative_to(data)} holds {m.decode()}" for m in markers if m in blob]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--warm-up", type=float, default=10.0, help="minutes left out of the growth checks")
    parser.add_argument("--preset", default=None, help="a synthetic model (tiny, bench) instead of the bundled one")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--purge-delay", type=float, default=60.0, help="KVC_PURGE_DELAY_S")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("soak-results"),
                        help="folder for soak.csv, soak-turns.csv, soak.png")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvc-soak-"))
    data = work / "data"
    if args.preset:
        from make_synthetic import write_model

        model = write_model(work / f"{args.preset}.gguf", args.preset)
    else:
        model = bundled_path(ROOT / "models")
    accounts = Users(work / "users.json")
    users = [User(f"user{i}", random.Random(args.seed * 1000 + i)) for i in range(args.users)]
    for name in [ADMIN, *(u.name for u in users)]:
        accounts.add(name, PASSWORD, admin=name == ADMIN)
    port = free_port()
    proc = start_app(data, model, accounts.path, port, args.purge_delay, work / "app.log")
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    until = started + args.minutes * 60
    samples: list[dict] = []
    try:
        admin = connect(url, ADMIN)
        app = psutil.Process(proc.pid)
        threads = [threading.Thread(target=run_user, args=(url, u, work, until, started), daemon=True) for u in users]
        for t in threads:
            t.start()
        while time.monotonic() < until:
            samples.append(sample(app, data, admin, started))
            print(f"  {samples[-1]['t_s'] / 60:.1f} min: RSS {samples[-1]['rss_mib']:.0f} MiB, "
                  f"fds {samples[-1]['fds']}, threads {samples[-1]['threads']}, "
                  f"KV RAM tier {samples[-1]['kv_ram_mib']:.0f} MiB", file=sys.stderr, flush=True)
            time.sleep(max(0.0, min(args.sample, until - time.monotonic())))
        for t in threads:
            t.join(timeout=600)
        samples.append(sample(app, data, admin, started))
        problems = check_users(url, users)
        delete_everything(url, users)
        deadline = time.monotonic() + args.purge_delay + 60  # the clean-up runs purge-delay after the last delete
        while (left := leftovers(data, users)) and time.monotonic() < deadline:
            time.sleep(0.5)
        served = httpx.get(url, timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "soak.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    with (args.out / "soak-turns.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "t_s", "ttft_s", "error"])
        writer.writerows([u.name, round(t, 2), ttft, error] for u in users for t, ttft, error in u.turns)
    wins = windows(users)
    if not wins:
        print(f"no turn was completed in {args.minutes} minutes; see {work / 'app.log'}")
        return 1
    chart(samples, wins, args.out / "soak.png")
    report(args, samples, wins, users, problems, left, served)
    shutil.rmtree(work, ignore_errors=True)
    errors = sum(w["errors"] for w in wins)
    return 0 if not errors and not problems and not left and served else 1


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
