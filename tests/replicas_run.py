"""Real llama-server replicas on loopback for the tests, started the way a user does
(``python -m backend.inference.llama_server``); skipped with the one command that builds llama-server where it is
not built (a failure in CI, which builds it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from apprun import free_port
from conftest import ROOT

from backend.inference import BUILD_HINT, find_binary


def require_server() -> Path:
    """The llama-server binary, else skip (fail in CI) with the command that builds it."""
    binary = find_binary()
    if binary is None:
        message = f"llama-server is not built; build it with `{BUILD_HINT}`"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run builds it)")
        pytest.skip(message)
    return binary


@dataclass
class ReplicaProc:
    """One replica process on loopback."""

    model: Path
    slot_dir: Path
    env: dict
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ReplicaProc:
        """Start it (again, on the same port) and wait for ``/health``."""
        log = open(self.slot_dir.parent / f"replica-{self.port}.log", "a")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.inference.llama_server", "--model", str(self.model),
                                      "--port", str(self.port), "--slot-dir", str(self.slot_dir), "--threads", "1"],
                                     cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"replica on {self.port} exited {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"replica on {self.port} did not start within {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def replicas(model: Path, slot_dir: Path, n: int, env: dict | None = None) -> list[ReplicaProc]:
    """``n`` started replicas of ``model`` sharing ``slot_dir``."""
    require_server()
    slot_dir.mkdir(parents=True, exist_ok=True)
    return [ReplicaProc(model, slot_dir, env or {}).start() for _ in range(n)]
