"""Logs per model run: llama.cpp's own log (through its log callback) and the app's logging, into
one file per model load under ``data_dir/logs/runs``, plus reading them back filtered.

llama.cpp reports through ``llama_log_set``; llama-cpp-python installs a callback that prints to
stderr only when verbose. ``install_llama_log_callback`` replaces it with one that hands whole
lines to the ``llama.cpp`` logger, which writes only to the current run's file (its model-load
chatter stays off the console). Nothing here logs document text or user messages: the app logs
names, ids and counts, and llama.cpp logs shapes and timings.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import re
import sys
import threading
import time
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path

import llama_cpp

from backend.storage.paths import RUN_ID, contained

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")

# enum ggml_log_level in ggml.h: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the
# last line). llama-cpp-python's own _logger.py still maps the older order (INFO 1 ... DEBUG 4).
_GGML_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}

llama_log = logging.getLogger("llama.cpp")
llama_log.propagate = False  # only the run file gets it
llama_log.setLevel(logging.DEBUG)


class _LineAssembler:
    """llama.cpp sends pieces of lines; emit each whole line once, at its first piece's level."""

    def __init__(self):
        self.buffer, self.level = "", logging.INFO
        self.lock = threading.Lock()

    def __call__(self, level: int, text: bytes, _user_data) -> None:
        with self.lock:
            if level != 5 and not self.buffer:
                self.level = _GGML_LEVELS.get(level, logging.INFO)
            self.buffer += text.decode("utf-8", errors="replace")
            *lines, self.buffer = self.buffer.split("\n")
            level_now = self.level
        for line in lines:
            if line.strip():
                llama_log.log(level_now, line.rstrip())


_assembler = _LineAssembler()
_callback = llama_cpp.llama_log_callback(_assembler)  # kept referenced for as long as llama.cpp may call it


def _dump_faults_to(stream) -> None:
    """Point ``faulthandler`` (the Python stacks on a native crash) at ``stream``; off when it has no file."""
    try:
        faulthandler.enable(stream, all_threads=True)
    except (AttributeError, ValueError, OSError):  # no stream, or one without a file descriptor
        faulthandler.disable()


def install_llama_log_callback() -> None:
    """Route llama.cpp's log, and libmtmd's (the vision projector's loader and encoder, which logs on its
    own and printed hundreds of lines to stderr per projector load), to the ``llama.cpp`` logger (idempotent)."""
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    try:
        from llama_cpp import mtmd_cpp
    except (ImportError, OSError):  # a build without libmtmd: nothing more logs
        return
    mtmd_cpp.mtmd_log_set(_callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_callback, ctypes.c_void_p(0))


TAIL_BYTES = 4 * 2**20  # the log view reads at most this much of a run's end: its tail answers at once at any size


def tail_lines(path: Path, limit_bytes: int) -> list[str]:
    """The whole lines in the last ``limit_bytes`` of a text file (the first, cut, line dropped when the file is
    longer), read with one seek: the log view answers as fast for a 1 GB file as for a small one.

    Args:
        path: the file.
        limit_bytes: most bytes read from its end.

    Returns:
        Lines, oldest first, without line endings.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(max(0, size - limit_bytes))
        data = f.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > limit_bytes else lines


@dataclass(frozen=True)
class LogRun:
    """One model run's log file.

    Attributes:
        run_id: file stem, ``<YYYYmmdd-HHMMSS>-<model>``.
        started_at: Unix seconds.
        size_bytes: file size, bytes.
        current: whether this process writes to it now.
    """

    run_id: str
    started_at: float
    size_bytes: int
    current: bool


class _RunFile(RotatingFileHandler):
    """A run's log file that rotates at its size cap, pointing ``faulthandler`` at each new file (the old stream is
    closed by the rotation, and a native crash's stacks must not go to a closed descriptor)."""

    def doRollover(self) -> None:
        super().doRollover()
        if self.stream is not None:
            _dump_faults_to(self.stream)


class RunLogs:
    """One log file per model run, together under a size cap.

    Args:
        folder: ``data_dir/logs/runs``.
        cap_bytes: most bytes the runs' files take together: a run's file rotates at half of it (one old part
            kept), and the oldest runs are deleted at each new run until the rest fit.
    """

    def __init__(self, folder: Path, cap_bytes: int = 20 * 2**20):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cap_bytes = cap_bytes
        self.current: str | None = None
        self._handler: logging.Handler | None = None
        install_llama_log_callback()

    def prune(self) -> list[str]:
        """Delete the oldest runs' files (never the current run's) until all of them fit ``cap_bytes``.

        Returns:
            The run ids deleted.
        """
        files = sorted(self.folder.glob("*.log*"), key=lambda p: p.stat().st_mtime)
        total, gone = sum(p.stat().st_size for p in files), []
        for path in files:
            if total <= self.cap_bytes:
                break
            run_id = path.name.split(".log")[0]
            if run_id == self.current:
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            gone.append(run_id)
        return gone

    def start(self, model_name: str) -> str:
        """Begin a new run's file (closing the previous one); the app's INFO logging and all of
        llama.cpp's log go to it, and so does ``faulthandler``'s stack dump if llama.cpp crashes
        the process itself.

        Args:
            model_name: the model file's name, used in the run id.

        Returns:
            The run id.
        """
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_name).stem)[:80]
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}"
        n = 1
        while (self.folder / f"{run_id}.log").exists():
            n += 1
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{n}"
        handler = _RunFile(self.folder / f"{run_id}.log", maxBytes=max(self.cap_bytes // 4, 1), backupCount=1,
                           encoding="utf-8")
        handler.setFormatter(logging.Formatter(LINE_FORMAT))
        handler.setLevel(logging.DEBUG)
        self.close()
        for logger in (logging.getLogger(), llama_log):
            logger.addHandler(handler)
        self._handler, self.current = handler, run_id
        _dump_faults_to(handler.stream)
        self.prune()
        return run_id

    def close(self) -> None:
        """Stop writing the current run's file."""
        if self._handler is not None:
            _dump_faults_to(sys.stderr)
            for logger in (logging.getLogger(), llama_log):
                logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def runs(self) -> list[LogRun]:
        """Every run's log, newest first."""
        out = []
        for path in self.folder.glob("*.log"):
            stat = path.stat()
            out.append(LogRun(path.stem, stat.st_ctime, stat.st_size, path.stem == self.current))
        return sorted(out, key=lambda r: (r.run_id, r.started_at), reverse=True)

    def read(self, run_id: str | None = None, level: str = "INFO", tail: int = 200, search: str = "") -> list[str]:
        """The last lines of a run's log at ``level`` or above, optionally containing ``search``: read from the tail of
        its file (and of the part its last rotation set aside), never the whole of it (``TAIL_BYTES`` each).

        Args:
            run_id: the run (default: the current one, else the newest).
            level: one of ``LEVELS``; lines below it are left out (continuation lines, such as a
                traceback's, go with their record).
            tail: most lines returned.
            search: case-insensitive text a line must contain ("" = all).

        Returns:
            Lines, oldest first.

        Raises:
            ValueError: unknown run or level (the message is one sentence for the user).
        """
        if level not in LEVELS:
            raise ValueError(f"Unknown log level '{level}'; use one of {', '.join(LEVELS)}.")
        run_id = run_id or self.current or next((r.run_id for r in self.runs()), None)
        path = contained(self.folder, run_id, RUN_ID, ".log")
        if path is None or not path.is_file():
            raise ValueError("There is no such log run; pick one from the list of runs.")
        floor, keep, out = LEVELS.index(level), False, []
        needle = search.lower()
        older = path.with_name(path.name + ".1")  # the part the last rotation set aside
        lines = (tail_lines(older, TAIL_BYTES) if older.is_file() else []) + tail_lines(path, TAIL_BYTES)
        for line in lines:
            m = _LINE.match(line)
            if m:
                keep = LEVELS.index(m.group(1)) >= floor
            if keep and (not needle or needle in line.lower()):
                out.append(line)
        return out[-tail:] if tail > 0 else out
