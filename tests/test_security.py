"""A hostile client against the real app (issue 44): ids that try to leave the data dir, wrong types at every
named endpoint, broken Unicode, control and bidi characters, errors that must say the right thing and reveal
nothing. Calls go over raw HTTP (``rawapi``) as any client may send them, and through ``gradio_client``."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import TESTDATA, launch, make_settings, stop
from gradio_client import handle_file
from rawapi import call

DOC = TESTDATA / "pdf" / "sf_pdflatex-4-pages.pdf"


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model, embedder):
    """The app with one cached document and a session, its model folder listed."""
    data = tmp_path_factory.mktemp("security") / "data"
    running = launch(make_settings(data, tiny_model, extra_model_dirs=[tiny_model.parent]), embedder)
    doc = running.client.predict(handle_file(str(DOC)), "", True, api_name="/upload_document")
    sid = running.client.predict(api_name="/create_session")
    running.doc, running.sid = doc, sid
    yield running
    stop(running)


def sentence(app, name: str, data: list) -> str:
    """The endpoint's refusal, which must be one sentence (never blank)."""
    answer = call(app.url, name, data)
    assert not answer.ok, (name, data, answer.raw[-300:])
    assert answer.error, f"{name}{data!r} answered with a blank error"
    return answer.error


def test_a_cache_key_never_reaches_a_file_outside_the_cache_folder(app, tmp_path):
    (entry,) = app.client.predict(api_name="/list_caches")
    folder = app.services.settings.data_dir / "kvcache"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    hexname = "0123456789abcdef0123456789abcdef"
    for stem in ("x", hexname):  # a real entry's files, planted outside under a plain and a well-formed name
        shutil.copy(folder / f"{entry['key']}.kv", outside / f"{stem}.kv")
        sidecar = json.loads((folder / f"{entry['key']}.json").read_text())
        (outside / f"{stem}.json").write_text(json.dumps({**sidecar, "key": stem}))
    link = "fedcba9876543210fedcba9876543210"  # a link inside the cache folder to the planted files
    (folder / f"{link}.kv").symlink_to(outside / f"{hexname}.kv")
    (folder / f"{link}.json").symlink_to(outside / f"{hexname}.json")
    keys = [str(outside / "x"), str(outside / hexname), "../../" + str(outside.relative_to("/")) + "/x",
            f"../{outside.name}/{hexname}", link, entry["key"] + "/../" + entry["key"], "", "*", entry["key"].upper()]
    for key in keys:
        for name, data in (("pin_cache", [key, True]), ("delete_cache", [key])):
            assert "cache entry" in sentence(app, name, data).lower(), (name, key)
    assert sorted(p.name for p in outside.iterdir()) == sorted(f"{s}.{e}" for s in ("x", hexname) for e in ("kv", "json"))
    assert (folder / f"{link}.kv").is_symlink()  # untouched, and never listed
    assert [e["key"] for e in app.client.predict(api_name="/list_caches")] == [entry["key"]]
    assert app.client.predict(entry["key"], True, api_name="/pin_cache")["pinned"]  # the real key still works
    for path in (folder / f"{link}.kv", folder / f"{link}.json"):
        path.unlink()


WRONG = [  # (endpoint, arguments, the argument the sentence must name); the findings of issue 44 and their kin
    ("search_documents", ["query", [], "ten"], "k"),
    ("search_documents", ["query", [], 0], "k"),
    ("search_documents", ["query", "abc", 3], "doc_ids"),
    ("chat", ["S", 123, [], "auto", None, None, None, None], "message"),
    ("chat", ["S", None, [], "auto", None, None, None, None], "message"),
    ("chat", ["S", ["a"], [], "auto", None, None, None, None], "message"),
    ("chat", ["S", "hello", 123, "auto", None, None, None, None], "doc_ids"),
    ("chat", ["S", "hello", [123, None], "auto", None, None, None, None], "doc_ids"),
    ("chat", ["S", "hello", "abc", "auto", None, None, None, None], "doc_ids"),
    ("chat", ["S", "hello", [], "bogus", None, None, None, None], "mode"),
    ("cache_document", [None], "doc_id"),
    ("pin_cache", [[1], True], "key"),
    ("pin_cache", ["k", {"a": 1}], "pinned"),
    ("load_model", [None, 0, None, 0, 0, None, "", "", None, None, 0, None], "path"),
    ("load_model", ["x.gguf", -5, None, 0, 0, None, "", "", None, None, 0, None], "n_ctx"),
    ("set_system_prompt", ["S", 123], "text"),
    ("rename_session", ["S", {"t": 1}], "title"),
    ("prefetch", ["", [], "bogus"], "mode"),
    ("restart_model", [{"a": 1}], "reset"),
    ("get_logs", ["", "INFO", "x"], "tail"),
    ("get_logs", ["", "LOUD", 10], "level"),
    ("delete_session", [None], "session_id"),
    ("export_session", ["S", "pdf"], "format"),
    ("upload_document", ["not a file", "", False, "", False], "file"),
    ("get_document_text", [["D"]], "doc_id"),
]


@pytest.mark.parametrize(("name", "data", "argument"), WRONG, ids=[f"{n}-{a}" for n, _, a in WRONG])
def test_a_wrong_type_gets_one_sentence_naming_the_argument(app, name, data, argument):
    data = [app.sid if v == "S" else app.doc["doc_id"] if v == "D" else v for v in data]
    message = sentence(app, name, data)
    assert f"`{argument}`" in message, message
    assert "Traceback" not in message and "pydantic" not in message and "/" not in message.replace("/rag", "")


def test_missing_and_extra_arguments_are_named(app):
    assert "`session_id`" in sentence(app, "get_history", [])
    assert "takes no arguments" in sentence(app, "create_session", [1, 2])
    assert "takes 1 argument" in sentence(app, "delete_document", ["a", "b"])
    answer = call(app.url, "chat", [app.sid, "Hello?", []])  # the rest take their defaults, as gradio_client does
    assert answer.ok and answer.data["done"]


def test_a_lone_surrogate_is_refused_and_the_app_goes_on(app):
    for name, data in (("chat", [app.sid, "what \ud800 is", []]), ("search_documents", ["x\udfff", [], 3]),
                       ("rename_session", [app.sid, "\ud83d"])):
        assert "surrogate" in sentence(app, name, data), name
    assert call(app.url, "chat", [app.sid, "And now?", []]).ok


def test_errors_name_the_data_not_an_outage(app):
    message = sentence(app, "delete_session", [None])
    assert "Redis" not in message and "`session_id`" in message
    assert "session does not exist" in sentence(app, "delete_session", ["../../etc"])
    assert "invalid literal" not in sentence(app, "get_logs", ["", "INFO", "x"])
    assert "no such log run" in sentence(app, "get_logs", ["../../../etc/passwd", "INFO", 5])
    assert "does not exist" in sentence(app, "get_document_text", ["../../uploads"])


def test_list_models_works_through_gradio_client(app, tiny_model):
    models = app.client.predict(api_name="/list_models")
    (tiny,) = [m for m in models if m["name"] == tiny_model.name]
    assert tiny["model_file"] == str(tiny_model) and "path" not in tiny and tiny["error"] == ""


def test_titles_and_exports_carry_no_control_or_override_characters(app):
    sid = app.client.predict(api_name="/create_session")
    nasty = "Q\x00u\x1b[2Je\u202ery\u2066!\r\nsecond\tline"
    answer = call(app.url, "chat", [sid, nasty, []])
    assert answer.ok
    (listed,) = [s for s in app.client.predict(api_name="/list_sessions") if s["session_id"] == sid]
    assert listed["title"] == "Qu[2Jery! second line"
    history = app.client.predict(sid, api_name="/get_history")
    assert history["messages"][0]["content"] == "Qu[2Jery!\nsecond\tline"
    renamed = app.client.predict(sid, "Title\x07 with\u202e bell", api_name="/rename_session")
    assert renamed["title"] == "Title with bell"
    for fmt in ("markdown", "json"):
        content = app.client.predict(sid, fmt, api_name="/export_session")["content"]
        assert not any(c in content for c in "\x00\x1b\x07\u202e\u2066"), fmt
        assert "\\u001b" not in content and "\\u0000" not in content
