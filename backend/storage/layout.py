"""The data dir's layout version: read at start, migrated forward, or refused; never silently emptied.

``data_dir/layout.json`` holds ``{"version": N, "written_by": ...}``. A data dir without it but with
data in it was written before the layout had a version (version 0: the same folders as version 1).
Each migration moves the layout one version forward and records the new version at once, so a crash
part-way leaves a dir the next start carries on from. A data dir written by a newer app is refused
with a sentence that names both versions; nothing in it is changed.

Changes inside the stores are migrated where they are opened: the LanceDB tables gain missing
columns (``backend.documents.store.Store``) and a KV-cache entry of another format is recomputed
(``backend.kvcache.store``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from backend.storage.disk import write_atomically

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
LAYOUT_FILE = "layout.json"
FOLDERS = ("uploads", "lancedb", "kvcache", "redis", "logs", "preflight")  # what version 0 and 1 hold


class LayoutError(RuntimeError):
    """The data dir cannot be opened by this app; ``str(err)`` is one sentence for the user."""


def read_version(data_dir: Path) -> int | None:
    """The data dir's layout version: None for a new (empty or missing) dir, 0 for a dir written before
    versions, else the recorded one.

    Raises:
        LayoutError: ``layout.json`` exists but cannot be read.
    """
    path = Path(data_dir) / LAYOUT_FILE
    if path.is_file():
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"{path} is damaged, so the data dir's layout is unknown; restore it from a backup "
                              f"or write {{\"version\": {LAYOUT_VERSION}}} into it if the data dir is this app's.") from exc
    if any((Path(data_dir) / name).exists() for name in FOLDERS):
        return 0
    return None


def write_version(data_dir: Path, version: int) -> None:
    """Record the layout version (written whole, then renamed)."""
    write_atomically(Path(data_dir) / LAYOUT_FILE, json.dumps({"version": version, "written_by": "kvcache-chatbot"}).encode())


def _from_0(data_dir: Path) -> None:
    """Version 0 -> 1: the same folders; only the version file is new."""


MIGRATIONS: dict[int, Callable[[Path], None]] = {0: _from_0}  # version -> the step to version + 1


def open_layout(data_dir: Path) -> int:
    """Bring a data dir to ``LAYOUT_VERSION`` before anything opens it.

    Args:
        data_dir: the app's data dir (created when missing).

    Returns:
        The version the dir had when found (``LAYOUT_VERSION`` for a new dir).

    Raises:
        LayoutError: the dir was written by a newer app, or its version file is damaged; nothing is changed.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    found = read_version(data_dir)
    if found is None:
        write_version(data_dir, LAYOUT_VERSION)
        return LAYOUT_VERSION
    if found > LAYOUT_VERSION:
        raise LayoutError(f"The data dir {data_dir} has layout version {found}, written by a newer KVCache Chatbot; "
                          f"this one reads up to version {LAYOUT_VERSION}, so upgrade the app (nothing was changed).")
    for version in range(found, LAYOUT_VERSION):
        log.info("migrating the data dir %s from layout version %d to %d", data_dir, version, version + 1)
        MIGRATIONS[version](data_dir)
        write_version(data_dir, version + 1)
    return found
