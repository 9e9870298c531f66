"""Fuzzing for minutes, not examples: malformed files through the upload path and random JSON at every named
endpoint of the running app (on loopback, signed in as a user who is not an admin), with the properties of
``tests/test_fuzz_files.py`` and ``tests/test_fuzz_requests.py``.

    .venv/bin/python benchmarks/fuzz.py --minutes 20             # files and requests, half the time each
    .venv/bin/python benchmarks/fuzz.py --files 5000 --requests 2000

Files: real test files mutated (bytes flipped, cut short, garbage spliced in, renamed, zipped) and random bytes
under every extension; each must be stored or refused with one sentence naming it, within the parser time limit
(``--limit``, 10 s). Requests: any JSON value for each argument, too few or too many arguments; each answer must be
a result or one sentence, never the guard's "something went wrong", a traceback or a server path; the app must
serve throughout. A failing input is printed (Hypothesis shrinks it) and the run exits 1: make it a regression test.

Prints a table: inputs tried, stored / refused / answered, failures, crashes, hangs, seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "models")]

from fuzzing import check_answer, json_values, mutated_file, upload_holds
from rawapi import call

from backend.access.auth import Users
from backend.config import Settings
from backend.services import build_services

PASSWORD = "fuzz-secret-123"
BATCH = 100  # examples per Hypothesis run; runs repeat, each with new random inputs, until the time or count is up


def until(deadline: float | None, count: int | None, done: list[int]) -> bool:
    """Whether to go on: before the deadline and under the count."""
    return (deadline is None or time.monotonic() < deadline) and (count is None or done[0] < count)


def fuzz_files(work: Path, limit_s: float, deadline: float | None, count: int | None) -> dict:
    """Upload mutated and random files until the deadline or the count; returns the tallies."""
    svc = build_services(Settings(data_dir=work / "data", models_dir=work / "none", model_path=None,
                                  auto_download=False, ocr=False, extract_time_limit_s=limit_s))
    svc.documents.open()
    files = work / "files"
    files.mkdir()
    seen = {"stored": 0, "refused": 0, "skipped": 0}
    done = [0]
    started = time.monotonic()

    @settings(max_examples=BATCH, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(mutated_file())
    def one_file(file):
        if not until(deadline, count, done):
            return
        name, data = file
        seen[upload_holds(svc.documents, name, data, files, svc.settings.max_upload_bytes)] += 1
        done[0] += 1
        if done[0] % 500 == 0:
            print(f"  {done[0]} files, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    try:
        while until(deadline, count, done):
            one_file()  # a batch of BATCH new examples (those past the deadline or count do nothing); a failure raises
    finally:
        svc.close()
    return {"tried": done[0], **seen, "seconds": time.monotonic() - started}


def fuzz_requests(work: Path, deadline: float | None, count: int | None) -> dict:
    """Send random JSON to every named endpoint of a launched app until the deadline or the count."""
    from make_synthetic import write_model

    from app import build_app, look

    users = Users(work / "users.json")
    users.add("mallory", PASSWORD)
    model = write_model(work / "tiny.gguf", "tiny")
    settings_ = Settings(data_dir=work / "app", models_dir=work / "none", model_path=model, auto_download=False,
                         users_file=users.path, max_tokens=8, n_threads=1, cag_max_tokens=1 << 20)
    demo = build_app(settings_)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", auth=users.check, **look())
    with httpx.Client(base_url=url) as client:
        client.post("/login", data={"username": "mallory", "password": PASSWORD}).raise_for_status()
        cookies = client.cookies
    sid = call(url, "create_session", [], cookies).data
    endpoints = {f.api_name: len(f.inputs) for f in demo.fns.values()
                 if f.api_name and f.api_visibility == "public" and f.api_name != "upload_documents"}
    tally = {"answered": 0, "refused": 0}
    done = [0]
    started = time.monotonic()

    @settings(max_examples=BATCH, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(endpoints)), st.data())
    def one_call(name, draw):
        arity = endpoints[name]
        n = draw.draw(st.sampled_from([arity, arity, arity, max(arity - 1, 0), arity + 1]))
        data = draw.draw(st.lists(json_values([sid]), min_size=n, max_size=n))
        if not until(deadline, count, done):  # drawn all the same: Hypothesis wants each example drawn alike
            return
        answer = call(url, name, data, cookies, timeout_s=120)
        check_answer(answer, name, data)
        tally["answered" if answer.ok else "refused"] += 1
        done[0] += 1
        if done[0] % 500 == 0:
            print(f"  {done[0]} requests, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    try:
        while until(deadline, count, done):
            one_call()
        serving = call(url, "list_sessions", [], cookies).ok
    finally:
        demo.close()
        demo.services.close()
    return {"tried": done[0], **tally, "serving": serving, "seconds": time.monotonic() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None, help="run this long, half on files, half on requests")
    parser.add_argument("--files", type=int, default=None, help="files to try (with --minutes: at most)")
    parser.add_argument("--requests", type=int, default=None, help="requests to send (with --minutes: at most)")
    parser.add_argument("--limit", type=float, default=10.0, help="the parsers' time limit per file, seconds")
    args = parser.parse_args()
    if args.minutes is None and args.files is None and args.requests is None:
        args.minutes = 10.0
    half = args.minutes * 30 if args.minutes else None
    work = Path(tempfile.mkdtemp(prefix="kvc-fuzz-"))
    try:
        files = fuzz_files(work, args.limit, time.monotonic() + half if half else None, args.files) \
            if args.files != 0 else None
        requests = fuzz_requests(work, time.monotonic() + half if half else None, args.requests) \
            if args.requests != 0 else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| inputs | tried | stored / answered | refused with a sentence | skipped (archives) | failures | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    if files:
        print(f"| malformed files | {files['tried']:,} | {files['stored']:,} | {files['refused']:,} | "
              f"{files['skipped']:,} | 0 | {files['seconds']:.0f} |")
    if requests:
        print(f"| malformed requests | {requests['tried']:,} | {requests['answered']:,} | {requests['refused']:,} | — | 0 "
              f"| {requests['seconds']:.0f} |")
        print(f"\nThe app served throughout: {'yes' if requests['serving'] else 'NO'}.")
    return 0


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
