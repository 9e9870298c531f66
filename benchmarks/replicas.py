"""The KV cache across machines: llama-server replicas that save, share and restore the app's document caches,
timed side by side with the in-process engine in one run.

    .venv/bin/python benchmarks/replicas.py [--lengths 2000,8000] [--model bench|tiny|bundled|FILE] [--chats 8]
        [--decode-tokens 64] [--threads 2]

Two replicas on loopback (``python -m backend.inference.llama_server``, each with every core, ``n_seq_max`` slots,
one shared slot directory), the app's own services answering through them (``KVC_REMOTE_BASE_URL``), and the same
services in-process on the same GGUF (default: ``models/make_synthetic.py``'s bench preset, Qwen3-0.6B's shapes:
its costs are real, its answers are not read). For each document length, a SQuAD document of that many tokens,
asked about in whole-document mode (time to first token, TTFT, as the app measures it: ``metrics.ttft_s``):

* **cold**: nothing cached anywhere: the prefix's replica reads the document, saves its slot, answers;
* **warm slot**: the next question: the slot still holds the document;
* **restored after a restart**: that replica SIGKILLed and started again: it restores the slot file;
* **restored on the other replica**: that replica killed: the other one restores the same file;
* **primed in-process, restored remotely**: a second document cached by the in-process engine (the Cache button),
  then asked through the replicas: its state is exported to the slot directory and restored;
* in-process, side by side: cold, live (the next question), and restored from disk after a restart.

Then aggregate decode: ``--chats`` chats at once, each about its own short document, each generating
``--decode-tokens`` tokens, through one replica with that many slots against two replicas (rendezvous spreads the
documents); on 2 cores both replicas share the same two cores, so the second adds no arithmetic: the table says how
much it gives against that ceiling.

Last, a replica SIGKILLed while ``--chats`` users chat through two (once answers stream), each chat asking again
after it: every turn the app acknowledged must be in the saved histories (the answers the kill cut short
included, marked so), and the second round answered by the replica still up.

Prints Markdown tables; docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from squad import SQUAD

from backend.config import Settings
from backend.inference import Sampling, bundled_path
from backend.services import build_services

ROOT = Path(__file__).resolve().parent.parent
OWNER = "bench"
QUESTION = "What is this document about?"
GREEDY = Sampling(max_tokens=8, temperature=0.0)


def text_of(n_tokens: int, skip: int = 0) -> str:
    """SQuAD dev paragraphs, about ``n_tokens`` tokens (4 characters a token), starting ``skip`` paragraphs in."""
    paragraphs = [p["context"] for a in json.loads(SQUAD.read_text(encoding="utf-8"))["data"] for p in a["paragraphs"]]
    out = ""
    for p in paragraphs[skip:]:
        if out and len(out) + len(p) > n_tokens * 4:
            break
        out += p[: n_tokens * 4] + "\n\n"  # at least one paragraph, cut to size
    return out


class Replica:
    """One replica process started with the app's launcher."""

    def __init__(self, model: Path, slot_dir: Path, port: int, env: dict, threads: int):
        self.model, self.slot_dir, self.port, self.env, self.threads = model, slot_dir, port, env, threads
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.inference.llama_server", "--model",
                                      str(self.model), "--port", str(self.port), "--slot-dir", str(self.slot_dir),
                                      "--threads", str(self.threads)], cwd=ROOT, env={**os.environ, **self.env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"replica {self.port} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def services(data: Path, model: Path, slots: Path, n_ctx: int, slots_per: int, urls: list[str] | None):
    settings = Settings(data_dir=data, models_dir=data / "none", model_path=model, auto_download=False,
                        warm_up=False, n_ctx=n_ctx, n_seq_max=slots_per, cag_max_tokens=n_ctx, remote_slot_dir=slots,
                        remote_base_url=",".join(urls) if urls else None, kv_ram_budget_mb=0)
    return build_services(settings)


def ask(svc, doc: str, sampling: Sampling = GREEDY) -> dict:
    sid = svc.sessions.create(OWNER)
    for event in svc.chat.stream_turn(OWNER, sid, QUESTION, [doc], sampling, mode="cag"):
        if event.kind == "done":
            if event.data["metrics"].get("ttft_s") is None:
                raise RuntimeError(f"no answer: {event.text!r} {event.data['metrics'].get('stop_reason')}")
            return event.data["metrics"]
    raise RuntimeError("no done event")


def upload(svc, folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return svc.documents.upload(OWNER, path)[0].doc_id


def ttft_rows(model: Path, length: int, work: Path, threads: int, slots_per: int) -> list[tuple[str, str, float, str]]:
    """The TTFT table's rows for one document length: (engine, case, seconds, how)."""
    n_ctx = 1024 * (length * 3 // 2 // 1024 + 2)  # the bench tokenizer: about 1.45 tokens per 4 characters
    env = {"KVC_N_CTX": str(n_ctx), "KVC_N_SEQ_MAX": str(slots_per)}
    slots, data = work / f"slots-{length}", work / f"data-{length}"
    reps = [Replica(model, slots, p, env, threads).start() for p in (8311, 8312)]
    rows = []
    try:
        svc = services(data, model, slots, n_ctx, slots_per, [r.url for r in reps])
        try:
            doc = upload(svc, work, f"doc-{length}.txt", text_of(length))
            m = ask(svc, doc)
            home = next(r for r in reps if r.url == m["replica"])
            rows.append(("replicas", "cold", m["ttft_s"], f"{m['cache_tier']}, {m['prefix_tokens']:,} tokens"))
            warm = [ask(svc, doc) for _ in range(3)]
            rows.append(("replicas", "warm slot", statistics.median(w["ttft_s"] for w in warm),
                         f"{warm[-1]['cache_tier']}, cache_n {warm[-1]['server_cached_tokens']:,}"))
            home.kill()
            home.start()
            svc.chat.replicas.pool.probe(next(r for r in svc.chat.replicas.pool.replicas if r.url == home.url))
            m = ask(svc, doc)
            rows.append(("replicas", "restored after a restart", m["ttft_s"],
                         f"{m['cache_tier']} in {m['restore_s']:.2f} s, cache_n {m['server_cached_tokens']:,}"))
            home.kill()
            m = ask(svc, doc)
            rows.append(("replicas", "restored on the other replica", m["ttft_s"],
                         f"{m['cache_tier']} in {m['restore_s']:.2f} s on {m['replica'].rsplit(':', 1)[-1]}"))
            home.start()
            svc.chat.replicas.pool.probe(next(r for r in svc.chat.replicas.pool.replicas if r.url == home.url))
        finally:
            svc.close()
        local = services(data, model, slots, n_ctx, slots_per, None)  # the same data dir, in-process
        try:
            second = upload(local, work, f"second-{length}.txt", text_of(length, skip=40))
            m = ask(local, second)
            rows.append(("in-process", "cold", m["ttft_s"], f"{m['cache_tier']}, {m['prefix_tokens']:,} tokens"))
            m = ask(local, second)
            rows.append(("in-process", "next question", m["ttft_s"], m["cache_tier"]))
        finally:
            local.close()
        local = services(data, model, slots, n_ctx, slots_per, None)
        try:
            m = ask(local, second)
            rows.append(("in-process", "restored after a restart", m["ttft_s"],
                         f"{m['cache_tier']} in {m['restore_s']:.2f} s"))
        finally:
            local.close()
        svc = services(data, model, slots, n_ctx, slots_per, [r.url for r in reps])
        try:
            m = ask(svc, second)
            rows.append(("replicas", "primed in-process, restored remotely", m["ttft_s"],
                         f"{m['cache_tier']} in {m['restore_s']:.2f} s, cache_n {m['server_cached_tokens']:,}"))
        finally:
            svc.close()
    finally:
        for r in reps:
            r.kill()
    return rows


def decode_rate(model: Path, work: Path, threads: int, chats: int, tokens: int, n_replicas: int) -> tuple[float, set]:
    """Aggregate decode tokens/s of ``chats`` chats at once through ``n_replicas`` replicas (``chats`` slots in all)."""
    per = chats // n_replicas
    slots, data = work / f"slots-decode-{n_replicas}", work / f"data-decode-{n_replicas}"
    env = {"KVC_N_CTX": "2048", "KVC_N_SEQ_MAX": str(per)}
    reps = [Replica(model, slots, 8321 + i, env, threads).start() for i in range(n_replicas)]
    try:
        svc = services(data, model, slots, 2048, per, [r.url for r in reps])
        try:
            docs = [upload(svc, work, f"chat-{n_replicas}-{i}.txt", text_of(300, skip=100 + 3 * i)) for i in range(chats)]
            for d in docs:  # their prefixes computed first: the timed part is decoding
                svc.primer.cache_documents(OWNER, [d])
            results: list[dict] = []
            long = Sampling(max_tokens=tokens, temperature=0.0, ignore_eos=True)
            threads_ = [threading.Thread(target=lambda d=d: results.append(ask(svc, d, long))) for d in docs]
            started = time.perf_counter()
            for t in threads_:
                t.start()
            for t in threads_:
                t.join()
            wall = time.perf_counter() - started
            return sum(r["completion_tokens"] for r in results) / wall, {r["replica"] for r in results}
        finally:
            svc.close()
    finally:
        for r in reps:
            r.kill()


def kill_under_load(model: Path, work: Path, threads: int, chats: int, tokens: int) -> dict:
    """``chats`` chats at once through two replicas, each about its own document; once answers are streaming, one
    replica is SIGKILLed. Then each chat asks again. Returns what a user would check: the turns the app acknowledged
    (a ``done`` event) and how many of them are in the chats' saved histories, the answers cut short, and which
    replicas answered the second round."""
    per = chats // 2
    slots, data = work / "slots-kill", work / "data-kill"
    env = {"KVC_N_CTX": "2048", "KVC_N_SEQ_MAX": str(per)}
    reps = [Replica(model, slots, 8331 + i, env, threads).start() for i in range(2)]
    try:
        svc = services(data, model, slots, 2048, per, [r.url for r in reps])
        try:
            docs = [upload(svc, work, f"kill-{i}.txt", text_of(300, skip=200 + 3 * i)) for i in range(chats)]
            sids = [svc.sessions.create(OWNER) for _ in docs]
            long = Sampling(max_tokens=tokens, temperature=0.0, ignore_eos=True)
            streaming, acknowledged, lock = threading.Event(), [], threading.Lock()

            def chat(i: int) -> None:
                for event in svc.chat.stream_turn(OWNER, sids[i], QUESTION, [docs[i]], long, mode="cag"):
                    if event.kind == "token":
                        streaming.set()
                    elif event.kind == "done":
                        with lock:
                            acknowledged.append((i, event.data["metrics"]))

            def round_() -> list[threading.Thread]:
                workers = [threading.Thread(target=chat, args=(i,)) for i in range(chats)]
                for w in workers:
                    w.start()
                return workers

            workers = round_()
            streaming.wait(20)  # the first visible token, or 20 s in (random weights may stream none)
            time.sleep(0.5)
            reps[0].kill()
            for w in workers:
                w.join()
            first = list(acknowledged)
            acknowledged.clear()
            for w in round_():
                w.join()
            saved = sum(len(svc.sessions.get(OWNER, sid).messages) for sid in sids)
            return {"acknowledged": len(first) + len(acknowledged), "saved_messages": saved,
                    "cut_short": sum(m["stop_reason"] == "replica lost" for _, m in first),
                    "first_round_replicas": sorted({m.get("replica") or "-" for _, m in first}),
                    "second_round_replicas": sorted({m.get("replica") or "-" for _, m in acknowledged}),
                    "killed": reps[0].url}
        finally:
            svc.close()
    finally:
        for r in reps:
            r.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="2000,8000")
    parser.add_argument("--model", default="bench", help="bench (synthetic, Qwen3-0.6B shapes), tiny (synthetic, a smoke run), bundled, or a GGUF")
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--slots", type=int, default=2, help="slots per replica (KV streams: the app's n_seq_max)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kvc-replicas-"))
    try:
        if args.model in ("bench", "tiny"):
            sys.path.insert(0, str(ROOT / "models"))
            from make_synthetic import write_model

            model = write_model(work / f"{args.model}.gguf", args.model)
        else:
            model = bundled_path(ROOT / "models") if args.model == "bundled" else Path(args.model)
        print(f"\nTTFT, {model.name}, {args.threads} threads per replica, {args.slots} slots each\n")
        print("| document | engine | case | TTFT s | how |\n|---:|---|---|---:|---|")
        for length in (int(x) for x in args.lengths.split(",")):
            for engine, case, ttft, how in ttft_rows(model, length, work, args.threads, args.slots):
                print(f"| {length:,} | {engine} | {case} | {ttft:.2f} | {how} |", flush=True)
        one, used1 = decode_rate(model, work, args.threads, args.chats, args.decode_tokens, 1)
        two, used2 = decode_rate(model, work, args.threads, args.chats, args.decode_tokens, 2)
        print(f"\n{args.chats} chats at once, {args.decode_tokens} tokens each\n")
        print("| replicas | aggregate decode tok/s | replicas that answered | vs one |\n|---:|---:|---:|---:|")
        print(f"| 1 ({args.chats} slots) | {one:.1f} | {len(used1)} | 1.00x |")
        print(f"| 2 ({args.chats // 2} slots each) | {two:.1f} | {len(used2)} | {two / one:.2f}x |")
        k = kill_under_load(model, work, args.threads, args.chats, args.decode_tokens)
        print(f"\nA replica SIGKILLed under {args.chats} chatting users (two rounds of {args.chats} turns)\n")
        print("| turns acknowledged | messages saved (2 each) | lost | cut short by the kill | killed | "
              "first round answered by | second round answered by |\n|---:|---:|---:|---:|---|---|---|")
        print(f"| {k['acknowledged']} | {k['saved_messages']} | {2 * k['acknowledged'] - k['saved_messages']} | "
              f"{k['cut_short']} | {k['killed']} | {', '.join(k['first_round_replicas'])} | "
              f"{', '.join(k['second_round_replicas'])} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    from provenance import main_with_stamp

    sys.exit(main_with_stamp(main))
