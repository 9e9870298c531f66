"""The soak's figures (``benchmarks/soak.py``): one sample of what the app holds, TTFT per 5-minute window, the
chart and the printed report."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psutil
from gradio_client import Client

from backend.storage import EmbeddedRedis

WINDOW_S = 300


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def lance_stats(folder: Path) -> tuple[int, int]:
    """(table versions, fragments) over every LanceDB table, read from the folder."""
    import lancedb

    versions = fragments = 0
    try:
        db = lancedb.connect(str(folder))
        for name in db.list_tables().tables:
            table = db.open_table(name)
            versions += len(table.list_versions())
            fragments += table.stats()["fragment_stats"]["num_fragments"]
    except Exception as exc:  # noqa: BLE001 (a table mid-write: counted at the next sample)
        print(f"  (LanceDB stats skipped: {exc})", file=sys.stderr)
    return versions, fragments


def sample(proc: psutil.Process, data: Path, admin: Client, started: float) -> dict:
    """One row of the samples (see the module docstring)."""
    children = proc.children(recursive=True)
    row = {"t_s": round(time.monotonic() - started, 1), "rss_mib": proc.memory_info().rss / 2**20,
           "children_rss_mib": sum(c.memory_info().rss for c in children if c.is_running()) / 2**20,
           "fds": proc.num_fds(), "threads": proc.num_threads()}
    for part in ("uploads", "lancedb", "kvcache", "redis", "logs", "tmp"):
        row[f"{part}_mib"] = folder_bytes(data / part) / 2**20
    row["lance_versions"], row["lance_fragments"] = lance_stats(data / "lancedb")
    try:
        row["redis_used_mib"] = int(EmbeddedRedis(data / "redis").client(5).info("memory")["used_memory"]) / 2**20
    except Exception:  # noqa: BLE001
        row["redis_used_mib"] = float("nan")
    try:
        caches = admin.predict(api_name="/model_status")["caches"]
        row["kv_ram_mib"] = caches["ram"]["bytes"] / 2**20
    except Exception:  # noqa: BLE001
        row["kv_ram_mib"] = float("nan")
    return row


def windows(users: list) -> list[dict]:
    """Per 5-minute window of the users' ``turns`` (``soak.User``): turns, TTFT p50/p95 (of the turns that streamed), errors."""
    rows: dict[int, dict] = {}
    for u in users:
        for t, ttft, error in u.turns:
            w = rows.setdefault(int(t // WINDOW_S), {"ttft": [], "errors": 0, "turns": 0})
            w["turns"] += 1
            w["errors"] += bool(error)
            if ttft is not None:
                w["ttft"].append(ttft)
    out = []
    for k in sorted(rows):
        ttft = sorted(rows[k]["ttft"]) or [float("nan")]
        out.append({"window": k, "from_min": k * WINDOW_S / 60, "turns": rows[k]["turns"], "errors": rows[k]["errors"],
                    "p50": statistics.median(ttft), "p95": ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))]})
    return out


def chart(samples: list[dict], wins: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    axes[0].plot(t, [s["rss_mib"] for s in samples], label="app RSS")
    axes[0].plot(t, [s["rss_mib"] + s["children_rss_mib"] for s in samples], label="app + children")
    axes[0].set_ylabel("MiB")
    axes[1].plot(t, [s["fds"] for s in samples], label="open fds")
    axes[1].plot(t, [s["threads"] for s in samples], label="threads")
    for part in ("uploads", "lancedb", "kvcache", "redis", "logs"):
        axes[2].plot(t, [s[f"{part}_mib"] for s in samples], label=part)
    axes[2].set_ylabel("MiB on disk")
    edges = [w["from_min"] for w in wins] + [wins[-1]["from_min"] + WINDOW_S / 60]  # each window drawn across
    for key in ("p95", "p50"):
        values = [w[key] for w in wins]
        axes[3].plot(edges, values + values[-1:], drawstyle="steps-post", marker="o", label=f"TTFT {key}")
    axes[3].set_ylabel("seconds")
    axes[3].set_xlabel("minutes")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def report(args, samples, wins, users, problems, left, served) -> None:
    print(f"\n{args.users} users, {args.minutes:.0f} minutes, "
          f"{'synthetic ' + args.preset if args.preset else 'the bundled SmolLM2-135M'}; samples every "
          f"{args.sample:.0f} s\n")
    print("| window (min) | turns | errors | TTFT p50 s | TTFT p95 s |\n|---|---:|---:|---:|---:|")
    for w in wins:
        print(f"| {w['from_min']:.0f}-{w['from_min'] + WINDOW_S / 60:.0f} | {w['turns']} | {w['errors']} | "
              f"{w['p50']:.2f} | {w['p95']:.2f} |")
    warm = [s for s in samples if s["t_s"] >= args.warm_up * 60] or samples
    first_w = next((w for w in wins if w["from_min"] >= args.warm_up), wins[0])
    last_w = wins[-1] if len(wins) < 2 or wins[-1]["turns"] >= 0.5 * first_w["turns"] else wins[-2]  # cut off
    total = [s["rss_mib"] + s["children_rss_mib"] for s in warm]
    print("\n| check (after the warm-up) | start | end | |\n|---|---:|---:|---|")
    print(f"| RSS, app + children, MiB | {total[0]:.0f} | {total[-1]:.0f} | {100 * (total[-1] / total[0] - 1):+.1f} % |")
    for key in ("fds", "threads", "lance_versions", "lance_fragments", "redis_used_mib", "kv_ram_mib",
                *(f"{p}_mib" for p in ("uploads", "lancedb", "kvcache", "redis", "logs", "tmp"))):
        print(f"| {key} | {warm[0][key]:.1f} | {warm[-1][key]:.1f} | max {max(s[key] for s in warm):.1f} |")
    print(f"| TTFT p95, s (window {first_w['from_min']:.0f}-, window {last_w['from_min']:.0f}-) | "
          f"{first_w['p95']:.2f} | {last_w['p95']:.2f} | {last_w['p95'] / first_w['p95']:.2f}x |")
    print(f"\nturns {sum(w['turns'] for w in wins)}, errors {sum(w['errors'] for w in wins)}; chats and documents "
          f"checked: {'every one whole and only its owner' if not problems else 'PROBLEMS'}; after deleting every "
          f"document: {'none of their bytes left' if not left else f'{len(left)} left'}; the app served to the end: "
          f"{'yes' if served else 'NO'}")
    losses = [line for u in users for line in u.client_losses]
    print(f"answers the app saved whose stream gradio_client cancelled (its reader closed under a new job): "
          f"{len(losses)}" + "".join(f"\n  {line}" for line in losses))
    for line in (problems + left)[:20]:
        print("  " + line)
    for u in users:
        for _, _, error in u.turns:
            if error:
                print(f"  {u.name}: {error}")
                break
