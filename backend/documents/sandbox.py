"""Reading an uploaded file's bytes in a child process with a time limit, so that no file can hang or crash the
app: a parser stuck in a loop past the limit is killed and the file refused; one that crashes (a C library on a
malformed file) takes only its child down. The app keeps serving either way.

Children are forked from Python's ``forkserver`` (a clean process without the app's threads, with the readers
already imported: about 20 ms a file), one per file, so killing one touches nothing else.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

PRELOAD = ["backend.documents.extract"]  # imported once by the fork server, so each child starts ready
_context: multiprocessing.context.BaseContext | None = None
_lock = threading.Lock()


class TimeLimit(RuntimeError):
    """The child ran past its limit (and was killed), or died without an answer."""


def context():
    """The ``forkserver`` context, its preload set once per process."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
    return _context


def _child(conn, fn: Callable, args: tuple) -> None:
    """In the child: run ``fn(*args)`` and send ``("ok", result)`` or ``("raised", exception)``."""
    try:
        result = ("ok", fn(*args))
    except BaseException as exc:  # noqa: BLE001 (sent back to be raised in the parent)
        result = ("raised", exc)
    try:
        conn.send(result)
    except Exception as exc:  # noqa: BLE001 (an exception that does not pickle: its text instead)
        conn.send(("raised", RuntimeError(f"{type(result[1]).__name__}: {result[1]}")))
        log.debug("unpicklable result: %s", exc)
    finally:
        conn.close()


def run_limited(fn: Callable, args: tuple, limit_s: float) -> Any:
    """``fn(*args)`` in a child process, for at most ``limit_s`` seconds.

    Args:
        fn: a module-level function (the child imports it by name).
        args: its arguments (pickled to the child).
        limit_s: seconds the child may take.

    Returns:
        What ``fn`` returned.

    Raises:
        TimeLimit: the child ran past ``limit_s`` (it is killed), or died without an answer (a crash).
        Exception: whatever ``fn`` raised, raised again here.
    """
    ctx = context()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    try:
        if not receive.poll(limit_s):
            proc.kill()
            raise TimeLimit(f"over the {limit_s:g} s limit")
        try:
            status, value = receive.recv()
        except EOFError:
            proc.join(5)
            raise TimeLimit(f"the reader crashed (exit code {proc.exitcode})") from None
    finally:
        receive.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status == "raised":
        raise value
    return value
