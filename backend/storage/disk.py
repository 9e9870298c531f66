"""Free space on the data dir's disk: the reserve that keeps chat history writable, and full-disk errors.

Uploads and KV-cache writes stop at ``disk_reserve_mb`` of free space, so that a filling disk still
leaves room for what costs little and matters most: chat turns (Redis's append-only file) and the
document index's small updates. A write that hits a full disk anyway (another program filled it)
is undone and reported in one sentence.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXTS = ("No space left on device", "Disk quota exceeded")  # how LanceDB's Rust errors carry ENOSPC


def is_disk_full(exc: BaseException) -> bool:
    """Whether an exception (or one it was raised from) says the disk or a quota is full."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if any(text in str(exc) for text in FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def size_text(n: float | None) -> str:
    """A size in bytes as the app shows it everywhere, in IEC binary units: ``1536`` -> ``1.5 KiB``, ``734003200``
    -> ``700 MiB``, ``1048576`` -> ``1 MiB``; one decimal below 10 of a unit (none when it is 0), none above; ``—``
    for None.

    Args:
        n: bytes.
    """
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 10 else f"{n:.1f}".removesuffix(".0") + f" {unit}"
        n /= 1024
    return f"{n:.0f} TiB"


def free_bytes(path: Path) -> int:
    """Bytes free to this process on the filesystem that holds ``path`` (which must exist)."""
    return shutil.disk_usage(path).free


def full_sentence(what: str, path: Path) -> str:
    """The one sentence for a write refused or failed for lack of space.

    Args:
        what: what was not saved, e.g. "'report.pdf'".
        path: a folder on the full disk (the data dir's).
    """
    return (f"The disk that holds the data dir ({path}) is too full, so {what} was not saved; free some space "
            "(or delete documents or KV caches) and try again.")


def low_space_warning(path: Path, reserve_bytes: int) -> str | None:
    """A warning when free space is below twice the reserve (uploads and caching stop at the reserve).

    Returns:
        One sentence, or None while there is room.
    """
    free = free_bytes(path)
    if free >= 2 * reserve_bytes:
        return None
    return (f"Disk almost full: {size_text(free)} free on the data dir's disk; uploads and KV caching stop at "
            f"{size_text(reserve_bytes)} (KVC_DISK_RESERVE_MB), chats go on.")


def write_atomically(path: Path, data: bytes | Callable[[BinaryIO], object], mode: int | None = None) -> None:
    """The one way the app writes a file that must never be half-written: into a temp file in the same folder
    (``<name>*.tmp``), flushed and fsynced, given ``mode``, renamed over ``path``, and the folder fsynced so the
    rename itself survives a power loss. A crash leaves the old file or the new one, never half of one; a failure
    removes the temp file (one a crash leaves behind is swept at start).

    Args:
        path: the file to write (its folder must exist).
        data: the bytes, or a function that writes them to the open binary file (for a large copy or a file
            written in parts).
        mode: permission bits for the file, e.g. ``0o600``; None keeps the default.

    Raises:
        OSError: the write failed (nothing of it is left; ``is_disk_full`` tells a full disk).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it is on the disk (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
