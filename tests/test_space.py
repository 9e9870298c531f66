"""The repository as a Hugging Face Space: its card's front matter, and the app started the way a Space starts it
(``python app.py`` with the Space's environment variables), keeping its data on the persistent storage."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import gradio
import httpx
import pytest
import yaml
from apprun import free_port, start_app, stop
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
    assert len(card["short_description"]) <= 60 and card["title"] and card["hf_oauth"] is True
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")  # the Space's lock (test_dependencies)
    assert "\ntorch==" in requirements and "--hash=sha256:" in requirements and "\n." not in requirements


OAUTH = {"OAUTH_CLIENT_ID": "test-client", "OAUTH_CLIENT_SECRET": "test-secret", "OAUTH_SCOPES": "openid profile",
         "OPENID_PROVIDER_URL": "https://huggingface.co"}  # what a Space with hf_oauth: true sets


def start_like_a_space(cwd: Path, storage: Path, model: Path, **extra: str) -> tuple[subprocess.Popen, str]:
    """``python app.py`` with the variables a Space sets; returns the process and its URL once it serves."""
    port = free_port()
    env = {"SPACE_ID": "kvc-team/kvcache-chatbot", "SYSTEM": "spaces", "GRADIO_SERVER_NAME": "0.0.0.0",
           "KVC_SPACE_STORAGE_DIR": str(storage), "KVC_MODEL_PATH": str(model), **extra}
    return start_app(cwd, env, port, unset=("KVC_DATA_DIR", "KVC_MODELS_DIR", "HF_HOME"))  # a Space sets none


@pytest.mark.parametrize("storage_attached", [True, False], ids=["with-storage", "no-storage"])
@pytest.mark.slow
def test_a_space_start_keeps_data_on_persistent_storage_or_says_it_is_lost(tmp_path, tiny_model, storage_attached):
    storage = tmp_path / "data-mount"
    if storage_attached:
        storage.mkdir()
    cwd = tmp_path / "repo"
    cwd.mkdir()
    # a Space without sign-in must say so (tests/test_auth.py signs in; the OAuth test below too)
    proc, url = start_like_a_space(cwd, storage, tiny_model, KVC_ALLOW_ANONYMOUS="true")
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


def hf_session_cookie(username: str) -> str:
    """The session cookie Gradio's /login/callback leaves after a Hugging Face sign-in (Starlette's
    SessionMiddleware format, signed with the key Gradio derives from OAUTH_CLIENT_SECRET)."""
    import base64
    import hashlib
    import json

    from itsdangerous import TimestampSigner

    secret = hashlib.sha256((OAUTH["OAUTH_CLIENT_SECRET"] + "-v4").encode()).hexdigest()
    userinfo = {"sub": f"id-{username}", "preferred_username": username, "name": username.title(),  # HF's claims
                "profile": f"https://huggingface.co/{username}", "picture": f"https://huggingface.co/{username}.png"}
    session = {"oauth_info": {"userinfo": userinfo,
                              "access_token": "hf_test", "expires_at": int(time.time()) + 3600, "scope": "openid"}}
    data = base64.b64encode(json.dumps(session).encode())
    return "session=" + TimestampSigner(secret).sign(data).decode()


@pytest.mark.slow
def test_a_space_with_hf_oauth_starts_and_keeps_each_hugging_face_users_data_apart(tmp_path, tiny_model):
    storage = tmp_path / "data-mount"
    storage.mkdir()
    cwd = tmp_path / "repo"
    cwd.mkdir()
    proc, url = start_like_a_space(cwd, storage, tiny_model, **OAUTH)  # no local accounts, no --allow-anonymous
    try:
        assert "Sign in with your Hugging Face account" in httpx.get(url + "config", timeout=10).text
        with pytest.raises(Exception, match="Sign in with Hugging Face first"):
            Client(url, verbose=False).predict(api_name="/list_documents")
        ada = Client(url, verbose=False, headers={"Cookie": hf_session_cookie("ada")})
        ben = Client(url, verbose=False, headers={"Cookie": hf_session_cookie("ben")})
        doc = ada.predict(handle_file(str(TESTDATA / "pdf" / "pypdf_crazyones.pdf")), "", False,
                          api_name="/upload_document")
        assert [d["doc_id"] for d in ada.predict(api_name="/list_documents")] == [doc["doc_id"]]
        assert ben.predict(api_name="/list_documents") == []
        with pytest.raises(Exception, match="does not exist"):
            ben.predict(doc["doc_id"], api_name="/get_document_text")
    finally:
        stop(proc)
