"""Upgrades: a data dir written before the layout had a version opens with everything in it, and one written
by a newer app is refused with a sentence, untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_settings

from backend.services import build_services
from backend.storage.layout import LAYOUT_VERSION, LayoutError, open_layout, read_version

FIXTURE = Path(__file__).resolve().parent / "data" / "layout-v0"
DOC, SESSION = "d84850db29b246d6ab57b385b88f9652", "a6d1f6c880d645919adebabb1920fe97"


@pytest.mark.slow  # starts the services twice
def test_a_data_dir_of_the_old_layout_opens_with_its_documents_and_chats(tmp_path, tiny_model, embedder):
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    assert read_version(data) == 0
    for _ in range(2):  # migrated on the first start; the second finds it current
        services = build_services(make_settings(data, tiny_model), embedder=embedder)
        try:
            assert read_version(data) == LAYOUT_VERSION and services.recovery.clean
            [doc] = services.documents.list("local")
            assert doc.doc_id == DOC and doc.name == "pypdf_crazyones.pdf"
            assert services.documents.file_of(doc).is_file()  # found under the moved data dir
            assert "The troublemakers" in services.documents.text("local", DOC).text
            assert services.documents.search("local", "misfits rebels troublemakers", [DOC], 1)[0].doc_id == DOC
            session = services.sessions.get("local", SESSION)
            assert session.title == "Crazy ones" and [m["role"] for m in session.messages][:2] == ["user", "assistant"]
            assert session.messages[0]["content"] == "What does the document praise?"
            done = next(e for e in services.chat.stream_turn("local", SESSION, "And who are they?", [DOC])
                        if e.kind == "done")
            assert done.data["metrics"]["prompt_tokens"] > 0
        finally:
            services.close()
    after = build_services(make_settings(data, tiny_model), embedder=embedder)
    try:
        assert len(after.sessions.get("local", SESSION).messages) == 6  # the fixture's turn and the two new ones
    finally:
        after.close()


def test_a_data_dir_of_a_newer_layout_is_refused_and_left_as_it_is(tmp_path, tiny_model, embedder):
    data = tmp_path / "data"
    (data / "uploads" / "x").mkdir(parents=True)
    (data / "uploads" / "x" / "keep.txt").write_text("mine")
    (data / "layout.json").write_text(json.dumps({"version": LAYOUT_VERSION + 1}))
    before = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
    with pytest.raises(LayoutError, match=f"layout version {LAYOUT_VERSION + 1}.*upgrade the app") as err:
        build_services(make_settings(data, tiny_model), embedder=embedder)
    assert "\n" not in str(err.value)
    assert sorted(str(p.relative_to(data)) for p in data.rglob("*")) == before
    (data / "layout.json").write_text("{not json")
    with pytest.raises(LayoutError, match="damaged"):
        open_layout(data)


def test_a_new_data_dir_starts_at_the_current_layout(tmp_path):
    assert read_version(tmp_path / "new") is None
    assert open_layout(tmp_path / "new") == LAYOUT_VERSION == read_version(tmp_path / "new")
