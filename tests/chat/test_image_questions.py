"""Images in chat through the whole backend: a synthetic vision pair in the models folder is paired by its
header and attached; an image question streams an answer with image tokens counted and the image kept for
the history; a question about the same image in a new chat restores its KV instead of encoding it, also after
a restart; a text-only model refuses an image with one sentence that quotes the text OCR reads in it."""

from __future__ import annotations

import base64
import os
import time

import pytest
from conftest import TESTDATA, make_settings
from screens import SCREENSHOT

from backend.chat import ChatError
from backend.inference import find_projector, list_models
from backend.services import build_services

OWNER = "local"


def ask(services, sid, question, images):
    events = list(services.chat.stream_turn(OWNER, sid, question, [], images=images))
    done = events[-1]
    assert done.kind == "done" and any(e.kind == "token" for e in events)
    return done.data["metrics"]


def test_an_image_question_streams_and_a_second_chat_reuses_the_image_even_after_a_restart(vision_models, tmp_path,
                                                                                          embedder):
    model = vision_models / "synthetic-vision-tiny.gguf"
    assert find_projector(model) == vision_models / "mmproj-synthetic-vision-tiny.gguf"
    infos = list_models([vision_models])
    assert [i.path.name for i in infos] == [model.name] and infos[0].projector is not None  # mmproj is no model
    settings = make_settings(tmp_path / "data", model, models_dir=vision_models, max_tokens=6)
    data_url = "data:image/png;base64," + base64.b64encode(SCREENSHOT.read_bytes()).decode()
    services = build_services(settings, embedder=embedder)
    try:
        assert services.engine.projector is not None
        # libmtmd's projector loading goes to the run's log (the Logs panel), not to stderr
        assert services.run_logs.read(level="DEBUG", search="clip_model_loader"), "libmtmd's log reaches the run file"
        sid = services.sessions.create(OWNER)
        first = ask(services, sid, "What does this page say?", [str(SCREENSHOT)])
        assert first["image_tokens"] > 0 and first["image_encode_s"] > 0 and first["reused_tokens"] == 0
        user = services.sessions.get(OWNER, sid).messages[0]
        assert user["content"] == "What does this page say?" and len(user["images"]) == 1
        assert (settings.path("images") / user["images"][0]).is_file()

        follow = ask(services, sid, "And who sent it?", [])  # a follow-up without an image still sees it
        assert follow["image_tokens"] == first["image_tokens"] and follow["image_encode_s"] == 0.0
        assert follow["reused_tokens"] >= first["image_tokens"] and follow["cache_tier"] in {"live", "ram"}
        assert "images" not in services.sessions.get(OWNER, sid).messages[2]

        other = services.sessions.create(OWNER)  # a new chat, the same picture sent as a data URL
        second = ask(services, other, "What is the order number?", [data_url])
        assert second["image_encode_s"] == 0.0 and second["reused_tokens"] >= second["image_tokens"] > 0
        assert services.sessions.get(OWNER, other).messages[0]["images"] == user["images"]  # stored once
        (entry,) = [c for c in services.caches.list(OWNER) if c.images]  # the image prefix, one saved entry
        assert entry.images == 1 and entry.kind == "image" and entry.label == "1 image" and not entry.documents
    finally:
        services.close()
    kept = settings.path("images") / user["images"][0]
    orphan = kept.with_name("0" * 32 + ".png")  # the image of a question a crash cut short: no message has it
    orphan.write_bytes(kept.read_bytes())
    os.utime(orphan, (1e9, 1e9))
    services = build_services(settings, embedder=embedder)  # a restart: only the disk tier has it
    try:
        for _ in range(100):  # the start-up sweep runs in its own thread
            if not orphan.exists():
                break
            time.sleep(0.1)
        assert not orphan.exists() and kept.is_file()
        third = ask(services, services.sessions.create(OWNER), "Who sent it?", [str(SCREENSHOT)])
        assert third["cache_tier"] == "disk" and third["image_encode_s"] == 0.0
        assert third["reused_tokens"] >= third["image_tokens"] > 0
    finally:
        services.close()


def test_a_text_only_model_refuses_an_image_and_quotes_its_ocr_text(tmp_path, tiny_model, embedder):
    services = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    try:
        sid = services.sessions.create(OWNER)
        with pytest.raises(ChatError, match="reads text only") as err:
            list(services.chat.stream_turn(OWNER, sid, "What is this?", [], images=[str(SCREENSHOT)]))
        assert "KX-48213" in str(err.value) and "\n" not in str(err.value)
        for bad, says in ((["x"] * 5, "at most 4 images"), (["data:image/png;base64,!!"], "not valid base64"),
                          ([str(tmp_path / "missing.png")], "could not be read")):
            with pytest.raises(ChatError, match=says):
                list(services.chat.stream_turn(OWNER, sid, "What is this?", [], images=bad))
        assert services.sessions.get(OWNER, sid).messages == []  # nothing half-saved
    finally:
        services.close()


def test_an_uploaded_image_without_text_is_described_by_the_vision_model_and_becomes_a_document(vision_models,
                                                                                               tmp_path, embedder):
    from PIL import Image

    from backend.documents import DocumentError
    from backend.documents.extract import DESCRIPTION_SECTION

    photo = tmp_path / "photo.png"  # no text in it: OCR alone finds nothing
    Image.linear_gradient("L").resize((320, 240)).convert("RGB").save(photo)
    model = vision_models / "synthetic-vision-tiny.gguf"  # random weights: ignore_eos gives it words to store
    settings = make_settings(tmp_path / "vision", model, models_dir=vision_models, ignore_eos=True,
                             describe_max_tokens=12)
    services = build_services(settings, embedder=embedder)
    try:
        doc, _ = services.documents.upload(OWNER, photo)
        pages = services.documents.pages(OWNER, doc.doc_id)
        assert doc.kind == "image" and [p.section for p in pages] == [DESCRIPTION_SECTION]
        assert pages[0].text.strip() and not pages[0].ocr
        assert services.documents.search(OWNER, pages[0].text.split()[0], [doc.doc_id], 1)[0].doc_id == doc.doc_id

        figure = TESTDATA / "pdf" / "pypdf_jpeg.pdf"  # a photo with a one-line caption
        plain, _ = services.documents.upload(OWNER, figure)
        assert [p.section for p in services.documents.pages(OWNER, plain.doc_id)] == [""]  # not asked: text only
        services.documents.delete(OWNER, plain.doc_id)
        described, _ = services.documents.upload(OWNER, figure, figures=True)
        pages = services.documents.pages(OWNER, described.doc_id)
        assert [(p.number, p.section) for p in pages] == [(1, ""), (1, DESCRIPTION_SECTION)]
        assert pages[0].text.strip() == "A PDF with a JPEG image." and pages[1].text.strip()
        again = services.documents.reindex(OWNER, described.doc_id)  # re-indexing describes it again
        assert [p.section for p in services.documents.pages(OWNER, again.doc_id)] == ["", DESCRIPTION_SECTION]
    finally:
        services.close()
    services = build_services(make_settings(tmp_path / "text", None), embedder=embedder)  # no model at all
    try:
        with pytest.raises(DocumentError, match="no text .* or a vision model is loaded to describe it"):
            services.documents.upload(OWNER, photo)
    finally:
        services.close()


def test_images_that_overflow_the_context_window_are_refused_with_a_sentence(vision_models, tmp_path, embedder):
    model = vision_models / "synthetic-vision-tiny.gguf"  # the screenshot is 13 tiles: more than this n_ctx holds
    settings = make_settings(tmp_path / "data", model, models_dir=vision_models, max_tokens=6, n_ctx=256)
    services = build_services(settings, embedder=embedder)
    try:
        sid = services.sessions.create(OWNER)
        with pytest.raises(ChatError, match=r"With its images \(\d+ tokens\) the question needs .* larger n_ctx"):
            ask(services, sid, "What does this page say?", [str(SCREENSHOT)])
        assert services.sessions.get(OWNER, sid).messages == []  # nothing half-saved
        assert ask(services, sid, "And in words?", [])["image_tokens"] == 0  # the chat still answers text
    finally:
        services.close()


def test_the_chat_endpoint_takes_gradio_files_as_it_takes_data_urls(vision_models, tmp_path, embedder):
    """``images=[handle_file("photo.png")]``, the way every Gradio client sends a file, is answered as the same
    picture sent as a data URL is (the second finds the first's image KV); a bare path is refused, never read."""
    from conftest import launch, stop
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    model = vision_models / "synthetic-vision-tiny.gguf"
    app = launch(make_settings(tmp_path / "data", model, models_dir=vision_models, max_tokens=6), embedder)
    try:
        sid = app.client.predict(api_name="/create_session")
        *_, by_file = app.client.submit(sid, "What does this page say?", [], "auto", None, None, None,
                                        [handle_file(str(SCREENSHOT))], api_name="/chat")
        assert by_file["done"] and by_file["metrics"]["image_tokens"] > 0 and by_file["metrics"]["image_encode_s"] > 0
        data_url = "data:image/png;base64," + base64.b64encode(SCREENSHOT.read_bytes()).decode()
        other = app.client.predict(api_name="/create_session")
        *_, by_url = app.client.submit(other, "What does this page say?", [], "auto", None, None, None, [data_url],
                                       api_name="/chat")
        assert by_url["metrics"]["image_tokens"] == by_file["metrics"]["image_tokens"]
        assert by_url["metrics"]["image_encode_s"] == 0.0, "the same pixels: the file's image KV is reused"
        with pytest.raises(AppError, match="a path on the server is not read"):
            app.client.predict(sid, "And this?", [], "auto", None, None, None, ["/etc/hostname"], api_name="/chat")
    finally:
        stop(app)
