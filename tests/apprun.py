"""Running ``python app.py`` as its own process, as a user or a service manager does, and looking at the
processes it leaves."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from conftest import ROOT


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(cwd: Path, env: dict[str, str], port: int | None = None, timeout_s: float = 180.0,
              unset: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """``python app.py`` in ``cwd`` with these environment variables added and those in ``unset`` removed
    (output in ``cwd/app.log``).

    Returns:
        The process and its URL, once the page answers 200.

    Raises:
        AssertionError: the app exited or did not answer within ``timeout_s`` seconds (the log's tail is shown).
    """
    port = port or free_port()
    full = {**os.environ, "GRADIO_SERVER_PORT": str(port), "KVC_AUTO_DOWNLOAD": "false", "HF_HUB_OFFLINE": "1",
            "KVC_N_THREADS": "1", **env}
    for name in unset:
        full.pop(name, None)
    log = open(cwd / "app.log", "a")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=cwd, env=full, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the app exited ({proc.returncode}):\n{(cwd / 'app.log').read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"the app did not start listening within {timeout_s:.0f} s")


def stop(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``timeout_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def processes_with(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (e.g. a data dir's path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and running(int(entry.name)):
                found.append(int(entry.name))
    return found
