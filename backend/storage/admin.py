"""Backup and restore of a data dir, while the app runs.

    python -m backend.storage.admin backup BACKUP_DIR [--data-dir DATA] [--with-caches]
    python -m backend.storage.admin restore BACKUP_DIR [--data-dir DATA]

A backup is a consistent snapshot, taken without stopping the app:

* Redis (sessions, history, quotas): an append-only-file rewrite (``BGREWRITEAOF``) makes a fresh,
  compact file of the whole dataset, which is copied once the rewrite is done; writes made during the
  copy may leave a cut-off last command, which Redis drops on load (``aof-load-truncated``, its default).
  With an external ``REDIS_URL`` the server is not ours to copy: back it up with its own tools.
* LanceDB: every table's version is recorded first, then the folder is copied; a restore rolls each
  table back to the recorded version, so rows written during the copy never appear half-done.
* The uploaded files and their stored text, the accounts, the layout version; KV caches only with
  ``--with-caches`` (they are recomputed on demand).

A restore writes into an empty or missing data dir only, and refuses while an app serves it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import lancedb
import redis

from backend.config import Settings
from backend.storage.layout import LAYOUT_FILE, read_version
from backend.storage.redis_server import EmbeddedRedis

MANIFEST = "backup.json"


class AdminError(RuntimeError):
    """A backup or restore cannot be done; ``str(err)`` is one sentence."""


def _server(data_dir: Path) -> redis.Redis | None:
    """A client of the embedded Redis serving this data dir, or None when none answers."""
    if not (data_dir / "redis").is_dir():
        return None
    client = EmbeddedRedis(data_dir / "redis").client(30)  # no retries: a missing server answers at once
    try:
        client.ping()
        return client
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None


def _rewrite_aof(client: redis.Redis, timeout_s: float = 600.0) -> None:
    """Run ``BGREWRITEAOF`` and wait until the new file is in place."""
    try:
        client.bgrewriteaof()
    except redis.ResponseError as exc:  # one is already running: wait for it
        if "in progress" not in str(exc):
            raise
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            if info.get("aof_last_bgrewrite_status", "ok") != "ok":
                raise AdminError("Redis could not rewrite its append-only file; see data_dir/redis/redis.log.")
            return
        if time.monotonic() > deadline:
            raise AdminError("Redis took too long to rewrite its append-only file; try the backup again.")
        time.sleep(0.1)


def backup(data_dir: Path, dest: Path, with_caches: bool = False) -> dict:
    """Copy a consistent snapshot of ``data_dir`` into ``dest`` (which must be missing or empty).

    Returns:
        The manifest written as ``dest/backup.json``: layout version, time, table versions, contents.

    Raises:
        AdminError: ``dest`` is not empty, or ``data_dir`` holds no data.
    """
    data_dir, dest = Path(data_dir), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise AdminError(f"{dest} is not empty; back up into a new folder.")
    if read_version(data_dir) is None:
        raise AdminError(f"{data_dir} holds no data to back up; check --data-dir (or KVC_DATA_DIR).")
    dest.mkdir(parents=True, exist_ok=True)
    client = _server(data_dir)
    if client is not None:
        _rewrite_aof(client)
    if (data_dir / "redis").is_dir():
        (dest / "redis").mkdir()
        for name in ("appendonly.aof", "dump.rdb"):
            if (data_dir / "redis" / name).is_file():
                shutil.copy2(data_dir / "redis" / name, dest / "redis" / name)
    tables = {}
    if (data_dir / "lancedb").is_dir():
        db = lancedb.connect(str(data_dir / "lancedb"))
        names = db.list_tables().tables  # a local connection lists every table in one page
        tables = {name: db.open_table(name).version for name in names}  # before the copy starts
        # a write in progress has ".tmp*" files that may be gone before they are copied; the versions above
        # never point at them
        shutil.copytree(data_dir / "lancedb", dest / "lancedb", ignore=shutil.ignore_patterns(".tmp*", "*.tmp"))
    for name in ("uploads", *(["kvcache"] if with_caches else [])):
        if (data_dir / name).is_dir():
            shutil.copytree(data_dir / name, dest / name, ignore=shutil.ignore_patterns("*.tmp"))
    for name in (LAYOUT_FILE, "users.json"):
        if (data_dir / name).is_file():
            shutil.copy2(data_dir / name, dest / name)
    manifest = {"layout": read_version(data_dir), "created_at": time.time(), "tables": tables,
                "redis": "copied" if (dest / "redis").is_dir() else "external: not included",
                "caches": with_caches}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def restore(src: Path, data_dir: Path) -> dict:
    """Restore a backup into ``data_dir`` (missing or empty), rolling each table back to its recorded version.

    Returns:
        The backup's manifest.

    Raises:
        AdminError: not a backup, ``data_dir`` is not empty, or an app serves it.
    """
    src, data_dir = Path(src), Path(data_dir)
    try:
        manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdminError(f"{src} is not a backup (no readable {MANIFEST}).") from exc
    if _server(data_dir) is not None:
        raise AdminError(f"An app is running on {data_dir}; stop it before restoring into it.")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise AdminError(f"{data_dir} is not empty; restore into a new folder (nothing was changed).")
    shutil.copytree(src, data_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MANIFEST))
    if manifest["tables"]:
        db = lancedb.connect(str(data_dir / "lancedb"))
        for name, version in manifest["tables"].items():
            table = db.open_table(name)
            if table.version != version:  # written while the copy ran: back to the snapshot
                table.checkout(version)
                table.restore()
    return manifest


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m backend.storage.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("backup", "restore"):
        one = sub.add_parser(name)
        one.add_argument("folder", type=Path, help="the backup folder")
        one.add_argument("--data-dir", type=Path, help="the data dir [KVC_DATA_DIR, ./data]")
        if name == "backup":
            one.add_argument("--with-caches", action="store_true", help="copy the KV caches too")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Settings().data_dir
    try:
        if args.command == "backup":
            manifest = backup(data_dir, args.folder, args.with_caches)
            print(f"Backed up {data_dir} into {args.folder} (layout {manifest['layout']}, "
                  f"{len(manifest['tables'])} tables, Redis {manifest['redis']}).")
        else:
            restore(args.folder, data_dir)
            print(f"Restored {args.folder} into {data_dir}; start the app with --data-dir {data_dir}.")
    except AdminError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
