"""The repository as a Hugging Face Space: its card's front matter, and the app started the way a Space starts it
(``python app.py`` with the Space's environment variables), keeping its data on the persistent storage."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import gradio
import httpx
import pytest
import yaml
from conftest import ROOT, TESTDATA
from gradio_client import Client, handle_file


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must open with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_readme_is_a_valid_gradio_space_card():
    card = front_matter()
    assert card["sdk"] == "gradio" and (ROOT / card["app_file"]).is_file()
    assert card["sdk_version"].split(".")[0] == gradio.__version__.split(".")[0]  # pyproject: gradio>=6,<7
    assert len(card["short_description"]) <= 60 and card["title"]
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8").split()
    assert "." in requirements, "the Space installs this project, so pyproject's dependencies apply"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_like_a_space(cwd: Path, storage: Path, model: Path) -> tuple[subprocess.Popen, str]:
    """``python app.py`` with the variables a Space sets; returns the process and its URL once it serves."""
    port = free_port()
    env = {**os.environ, "SPACE_ID": "kvc-team/kvcache-chatbot", "SYSTEM": "spaces", "GRADIO_SERVER_NAME": "0.0.0.0",
           "GRADIO_SERVER_PORT": str(port), "KVC_SPACE_STORAGE_DIR": str(storage), "KVC_MODEL_PATH": str(model),
           "KVC_AUTO_DOWNLOAD": "false", "KVC_N_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "KVC_ALLOW_ANONYMOUS": "true"}  # a Space without sign-in must say so (tests/test_auth.py signs in)
    for name in ("KVC_DATA_DIR", "KVC_MODELS_DIR", "HF_HOME"):
        env.pop(name, None)
    log = open(cwd / "app.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
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
    raise AssertionError("the app did not start listening within 180 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.parametrize("storage_attached", [True, False], ids=["with-storage", "no-storage"])
def test_a_space_start_keeps_data_on_persistent_storage_or_says_it_is_lost(tmp_path, tiny_model, storage_attached):
    storage = tmp_path / "data-mount"
    if storage_attached:
        storage.mkdir()
    cwd = tmp_path / "repo"
    cwd.mkdir()
    proc, url = start_like_a_space(cwd, storage, tiny_model)
    try:
        client = Client(url, verbose=False)
        doc = client.predict(handle_file(str(TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf")), "", False,
                             api_name="/upload_document")
        assert client.predict(api_name="/model_status")["loaded"]
        config = httpx.get(url + "config", timeout=10).text
    finally:
        stop(proc)
    data = storage / "kvcache-chatbot" if storage_attached else cwd / "data"
    assert (data / "uploads" / doc["doc_id"] / "sf_pdflatex-4-pages.pdf").is_file()
    assert (data / "lancedb").is_dir() and (data / "redis").is_dir() and (data / "logs" / "app.log").is_file()
    assert f"http://0.0.0.0:{url.rsplit(':', 1)[1].strip('/')}" in (cwd / "app.log").read_text(), "binds all interfaces"
    if storage_attached:
        assert not (cwd / "data").exists(), "nothing is written to the Space's ephemeral disk"
        assert "no persistent storage" not in config
    else:
        assert "no persistent storage" in config and not storage.exists()
    assert "Open to anyone" in config
