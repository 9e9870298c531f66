"""Model downloads against a small real HTTP server on loopback that speaks the Hugging Face hub's
resolve/tree protocol (huggingface_hub is pointed at it with ``endpoint``)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.inference import ModelDownloadError, download

REPO = "acme/tiny-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Serves ``files`` of one repo. ``cut_bytes``: every GET sends at most that many bytes of its
    body, then drops the connection (an interrupted transfer). ``advertised_size``: what HEAD claims."""

    def __init__(self, files: dict[str, bytes], cut_bytes: int | None = None, advertised_size: int | None = None):
        self.files, self.cut_bytes, self.advertised_size = files, cut_bytes, advertised_size
        self.requests: list[tuple[str, str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _file(self) -> tuple[str, bytes] | None:
                m = re.fullmatch(rf"/{REPO}/resolve/[^/]+/(.+)", self.path)
                return (m.group(1), hub.files[m.group(1)]) if m and m.group(1) in hub.files else None

            def _head(self, name: str, data: bytes) -> None:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                if hub.advertised_size:
                    self.send_header("X-Linked-Size", str(hub.advertised_size))

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path, ""))
                found = self._file()
                if found is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                self._head(*found)
                self.send_header("Content-Length", str(len(found[1])))
                self.end_headers()

            def do_GET(self):
                hub.requests.append(("GET", self.path, self.headers.get("Range", "")))
                if self.path.startswith(f"/api/models/{REPO}/tree/"):
                    body = json.dumps([{"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                                       for n, d in hub.files.items()]).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name, data = self._file()
                start = int(re.match(r"bytes=(\d+)-", self.headers.get("Range", "bytes=0-")).group(1))
                body = data[start:]
                self.send_response(206 if start else 200)
                self._head(name, data)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: hub.cut_bytes] if hub.cut_bytes else body)
                self.wfile.flush()
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def model_bytes(tiny_model, monkeypatch) -> bytes:
    """The tiny GGUF's bytes; and huggingface_hub allowed online, which only ever means the loopback hub
    (conftest sets HF_HUB_OFFLINE=1 for every other test)."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    return tiny_model.read_bytes()


def test_download_resumes_an_interrupted_transfer_and_reports_progress(tmp_path, model_bytes):
    import huggingface_hub.constants as hc

    step = hc.DOWNLOAD_CHUNK_SIZE  # huggingface_hub writes (and can resume from) whole chunks of this size
    payload = model_bytes * (2 * step // len(model_bytes) + 2)  # a bit over two chunks
    hub = FakeHub({"tiny-F32.gguf": payload, "README.md": b"# tiny\n"}, cut_bytes=step + step // 10)
    seen: list[tuple[int, int]] = []
    try:
        path = download(REPO, "f32", tmp_path / "models", progress=lambda done, total: seen.append((done, total)),
                        endpoint=hub.url)  # a quant pattern, resolved from the repo's file list
    finally:
        hub.close()
    assert path == tmp_path / "models" / "tiny-F32.gguf" and path.read_bytes() == payload
    ranges = [r for method, p, r in hub.requests if method == "GET" and "/resolve/" in p]
    assert ranges == ["", f"bytes={step}-", f"bytes={2 * step}-"], "each retry asks only for the missing bytes"
    assert seen[-1] == (len(payload), len(payload))
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen)), "progress never goes backwards"


def test_download_refuses_a_file_larger_than_the_free_disk(tmp_path, model_bytes):
    hub = FakeHub({"huge-Q8_0.gguf": model_bytes}, advertised_size=10**16)
    try:
        with pytest.raises(ModelDownloadError, match=r"huge-Q8_0.gguf needs .* TiB but only .* GiB is free"):
            download(REPO, "huge-Q8_0.gguf", tmp_path / "models", endpoint=hub.url)
    finally:
        hub.close()
    assert not any(method == "GET" and "/resolve/" in p for method, p, _ in hub.requests), "nothing was fetched"
    assert not list((tmp_path / "models").glob("*.gguf"))


def test_download_names_ambiguous_patterns_and_missing_files(tmp_path, model_bytes):
    hub = FakeHub({"m-Q4_K_M.gguf": model_bytes, "m-Q4_K_S.gguf": model_bytes})
    try:
        with pytest.raises(ModelDownloadError, match="exactly one .gguf file .*m-Q4_K_M.gguf, m-Q4_K_S.gguf"):
            download(REPO, "Q4_K", tmp_path / "models", endpoint=hub.url)
        with pytest.raises(ModelDownloadError, match="has no file nope.gguf in acme/tiny-GGUF"):
            download(REPO, "nope.gguf", tmp_path / "models", endpoint=hub.url)
    finally:
        hub.close()
