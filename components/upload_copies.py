"""Gradio's copy of an upload, let go of once no request still needs it.

Gradio's upload route renames every uploaded file into ``<upload folder>/<SHA-256 of its bytes>/<name>``, so two
users uploading the same file get one path, and the second upload replaces the first's file (a new modification
time). The app reads its own copy into the data dir and then deletes Gradio's, so that a deleted document leaves
no byte behind. Deleting it while another request that names the same path is still queued failed that request
("... is no longer on the server"): the 60-minute soak lost two uploads this way. So a copy is deleted only when
no other event in Gradio's queue (waiting or running) names it, and not when it was uploaded again after it was read
(that upload's own discard deletes it).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradio.context import LocalContext
from gradio.utils import get_upload_folder

MAX_WAITS = 60  # rounds of ``grace_s`` a copy waits for other events; after that Gradio's delete_cache takes it


class PendingDiscard:
    """Deletes uploaded copies after a grace time, waiting while another queued event names one of them.

    Args:
        doomed: ``(resolved path, modification time in ns when read)`` per copy.
        root: Gradio's upload folder (resolved); folders are removed up to it, never it.
        grace_s: seconds between checks.
        queue: Gradio's queue (``Blocks._queue``), or None outside a running app (no event can name the copy).
        own_event: the id of the event that read the copies (it names them, but is done with them).
    """

    def __init__(self, doomed: list[tuple[Path, int]], root: Path, grace_s: float, queue: Any, own_event: str | None):
        self.doomed, self.root, self.grace_s = doomed, root, grace_s
        self.queue, self.own_event = queue, own_event
        self.done = threading.Event()
        self.waits = 0
        self._schedule()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every copy is deleted or left to another upload; True when that happened within ``timeout``
        seconds."""
        return self.done.wait(timeout)

    def _schedule(self) -> None:
        timer = threading.Timer(self.grace_s, self._check)
        timer.daemon = True  # a copy left by a shutdown is removed at the next start (``app.own_temp_dir``)
        timer.start()

    def _check(self) -> None:
        named = paths_named_by_events(self.queue, self.own_event)
        waiting = []
        for path, mtime_ns in self.doomed:
            try:
                if path.stat().st_mtime_ns != mtime_ns:
                    continue  # uploaded again since it was read: left to that upload's discard
            except OSError:
                continue  # already gone
            if path in named:
                waiting.append((path, mtime_ns))
                continue
            _delete(path, self.root)
        self.doomed = waiting
        self.waits += 1
        if waiting and self.waits <= MAX_WAITS:
            self._schedule()
        else:
            self.done.set()


def discard_temp_copies(paths: Iterable[Path], grace_s: float, queue: Any = None) -> PendingDiscard | None:
    """Delete Gradio's temporary copies of uploaded files (and their folders, when left empty) once the data dir
    has its own copy or the upload was refused: ``grace_s`` seconds after, or later while another event in Gradio's
    queue still names the same copy. Only files inside Gradio's upload folder (``GRADIO_TEMP_DIR``) are touched.

    Args:
        paths: the uploaded files, as the handler got them.
        grace_s: seconds to wait before the first check and between checks (the app passes ``purge_delay_s``, the
            bound on how long deleted bytes linger anywhere); 0 checks at once.
        queue: Gradio's queue to look in; default: that of the app running the calling event (None outside one).

    Returns:
        The pending discard (already started; ``join`` it to wait), or None when nothing is to delete.
    """
    root = Path(get_upload_folder()).resolve()
    doomed = []
    for path in paths:
        try:
            resolved = Path(path).resolve()
            if resolved.is_relative_to(root) and resolved != root:
                doomed.append((resolved, resolved.stat().st_mtime_ns))
        except (OSError, RuntimeError):  # already gone, or a path that does not resolve
            continue
    if not doomed:
        return None
    if queue is None:
        blocks = LocalContext.blocks.get(None)
        queue = getattr(blocks, "_queue", None)
    return PendingDiscard(doomed, root, grace_s, queue, LocalContext.event_id.get(None))


def paths_named_by_events(queue: Any, own_event: str | None = None) -> set[Path]:
    """The files named by the inputs of every event in Gradio's queue, waiting or running, but ``own_event``.

    Args:
        queue: ``gradio.queueing.Queue`` (its ``event_ids_to_events`` holds each event from joining the queue until
            it ends), or None.
        own_event: an event id to leave out.

    Returns:
        Resolved paths (the ``path`` of every file payload in the events' data).
    """
    if queue is None:
        return set()
    events = list(getattr(queue, "event_ids_to_events", {}).items())  # a copy: the event loop changes the dict
    named: set[Path] = set()
    for event_id, event in events:
        body = getattr(event, "data", None)
        if event_id != own_event and body is not None:
            named.update(_file_paths(getattr(body, "data", None)))
    return named


def _file_paths(value: Any) -> Iterable[Path]:
    """Every ``{"path": ...}`` file payload inside an event's inputs, resolved."""
    if isinstance(value, dict):
        if isinstance(value.get("path"), str):
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                yield Path(value["path"]).resolve()
        for item in value.values():
            yield from _file_paths(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _file_paths(item)


def _delete(path: Path, root: Path) -> None:
    """Delete one copy and its folder when left empty (never ``root``)."""
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):  # not empty: another upload's file is there too
        if path.parent != root:
            path.parent.rmdir()
