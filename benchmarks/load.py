"""Load: N signed-in users at once, each running a script of turns against the real app (its HTTP API through
gradio_client, sign-in and all) on the synthetic model; then every user's history is checked.

    .venv/bin/python benchmarks/load.py                  # 8 users x 20 turns, the tiny synthetic model
    .venv/bin/python benchmarks/load.py --users 4 --turns 10 --preset bench

Each user uploads a document of their own (cached on upload) and, turn by turn: asks about it (cached, or
RAG every third turn), switches between two chats every four turns, uploads a second document at turn 10 and
deletes it at turn 15. Per turn it records the TTFT the client saw (submit to first streamed text), the
engine's TTFT (``metrics.ttft_s`` less ``metrics.queue_s``, the wait for a free sequence) and the rest, the time
queued behind other users (in the batch scheduler or on the way in). Afterwards each
user's two chats must hold exactly their own questions, in order, each answered, and nothing of anyone else's.
Rate limits are off (they would refuse this load by design); the limits are tested in tests/test_auth.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from gradio_client import Client, handle_file
from make_synthetic import write_model
from squad import percentile

from app import auth_for, build_app
from backend.access.auth import Users
from backend.config import Settings

PASSWORD = "load-test-password"


@dataclass
class UserRun:
    """What one user's script did."""

    name: str
    asked: dict[str, list[str]] = field(default_factory=dict)  # session id -> questions, in order
    client_ttft: list[float] = field(default_factory=list)
    engine_ttft: list[float] = field(default_factory=list)
    queue_wait: list[float] = field(default_factory=list)
    completed: int = 0
    failed: list[str] = field(default_factory=list)


def document(tmp: Path, user: str, n: int) -> Path:
    """A small Markdown document only this user has."""
    path = tmp / f"{user}-notes-{n}.md"
    path.write_text(f"# Notes of {user}, part {n}\n\n" + "\n\n".join(
        f"{user} keeps item {i} of part {n} in drawer {(i * 7 + n) % 13}; it was filed on day {i + n}."
        for i in range(40)), encoding="utf-8")
    return path


def run_user(url: str, name: str, turns: int, tmp: Path, start: threading.Barrier, out: UserRun) -> None:
    """One user's script (see the module docstring); failures are recorded, not raised."""
    try:
        client = Client(url, auth=(name, PASSWORD), verbose=False)
        doc = client.predict(handle_file(str(document(tmp, name, 1))), "", True, api_name="/upload_document")
        chats = [client.predict(api_name="/create_session") for _ in range(2)]
    except Exception as exc:  # noqa: BLE001 (recorded: the table counts failures)
        out.failed.append(f"set-up: {exc!r}")
        start.abort()  # the others stop waiting for this user
        return
    out.asked = {sid: [] for sid in chats}
    extra = None
    try:
        start.wait()
    except threading.BrokenBarrierError:
        return
    for turn in range(turns):
        try:
            if turn == 10:
                extra = client.predict(handle_file(str(document(tmp, name, 2))), "", False,
                                       api_name="/upload_document")
            if turn == 15 and extra:
                client.predict(extra["doc_id"], api_name="/delete_document")
                extra = None
            sid = chats[(turn // 4) % 2]
            mode = "rag" if turn % 3 == 2 else "auto"
            question = f"[{name} #{turn}] Which drawer holds item {turn} of part 1?"
            docs = [doc["doc_id"]] + ([extra["doc_id"]] if extra and turn % 2 else [])
            sent = time.perf_counter()
            first = None
            last = None
            for update in client.submit(sid, question, docs, mode, api_name="/chat"):
                if first is None and update.get("text"):
                    first = time.perf_counter() - sent
                last = update
            out.asked[sid].append(question)
            metrics = last["metrics"]
            seen = first if first is not None else time.perf_counter() - sent
            out.client_ttft.append(seen)
            waited = metrics.get("queue_s", 0.0)  # for a free sequence of the batch scheduler
            out.engine_ttft.append((metrics["ttft_s"] or 0.0) - waited)
            out.queue_wait.append(max(0.0, seen - (metrics["ttft_s"] or 0.0)) + waited)
            out.completed += 1
        except Exception as exc:  # noqa: BLE001 (recorded per turn: the table counts failures)
            out.failed.append(f"turn {turn}: {exc}")


def check_histories(url: str, runs: list[UserRun]) -> list[str]:
    """Problems found in the users' saved chats (empty when every history is whole and only theirs)."""
    problems = []
    everyone = {r.name for r in runs}
    for r in runs:
        client = Client(url, auth=(r.name, PASSWORD), verbose=False)
        for sid, questions in r.asked.items():
            messages = client.predict(sid, api_name="/get_history")["messages"]
            users = [m["content"] for m in messages if m["role"] == "user"]
            answers = [m for m in messages if m["role"] == "assistant"]
            if users != questions or len(answers) != len(questions):
                problems.append(f"{r.name} {sid[:8]}: {len(users)} questions / {len(answers)} answers saved, "
                                f"{len(questions)} asked, in order: {users == questions}")
            others = [m["content"] for m in messages if any(f"[{o} #" in m["content"] for o in everyone - {r.name})]
            if others:
                problems.append(f"{r.name} {sid[:8]}: holds {len(others)} messages of other users")
    return problems


def main() -> int:
    """Run the load and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--preset", default="tiny", help="synthetic model preset (tiny or bench)")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kvc-load-"))
    model = write_model(tmp / f"{args.preset}.gguf", args.preset)
    users = Users(tmp / "users.json")
    names = [f"user{i}" for i in range(args.users)]
    for name in names:
        users.add(name, PASSWORD)
    settings = Settings(data_dir=tmp / "data", models_dir=tmp / "none", model_path=model, users_file=users.path,
                        auto_download=False, n_ctx=4096, max_tokens=args.max_tokens, temperature=0.0,
                        questions_per_minute=0, uploads_per_day=0, max_concurrent_turns=0)
    demo = build_app(settings)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", auth=auth_for(users))
    try:
        runs = [UserRun(n) for n in names]
        barrier = threading.Barrier(len(names))
        threads = [threading.Thread(target=run_user, args=(url, n, args.turns, tmp, barrier, r))
                   for n, r in zip(names, runs)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = time.perf_counter() - started
        problems = check_histories(url, runs)
    finally:
        demo.close()
        demo.services.close()
    client, engine, queue = ([x for r in runs for x in getattr(r, k)] for k in ("client_ttft", "engine_ttft",
                                                                                  "queue_wait"))
    completed, failed = sum(r.completed for r in runs), sum(len(r.failed) for r in runs)
    print(f"{args.users} users x {args.turns} turns, synthetic '{args.preset}' model, max_tokens {args.max_tokens}")
    print(f"{'completed':>9} {'failed':>6} {'TTFT p50':>9} {'TTFT p95':>9} {'engine p50':>10} {'queue p50':>9} "
          f"{'queue p95':>9} {'total s':>7} {'histories':>9}")
    print(f"{completed:>9} {failed:>6} {percentile(client, 0.5):>9.3f} {percentile(client, 0.95):>9.3f} "
          f"{statistics.median(engine):>10.3f} {percentile(queue, 0.5):>9.3f} {percentile(queue, 0.95):>9.3f} "
          f"{total:>7.1f} {'ok' if not problems else 'BAD':>9}")
    for line in [f for r in runs for f in r.failed][:10] + problems[:10]:
        print("  " + line)
    return 0 if not failed and not problems else 1


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
