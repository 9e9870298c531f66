"""Images as documents: a real screenshot read by the real OCR engine (RapidOCR), and every kind of bad image
refused with one sentence while nothing else is affected."""

from __future__ import annotations

import io
import re

import pytest
from conftest import make_settings
from PIL import Image, ImageChops
from screens import SCREENSHOT, SCREENSHOT_TEXT

from backend.documents import DocumentError, ImageError, PageOcr, extract, open_image
from backend.services import build_services
from benchmarks.ocr import cer


def png_bytes(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kw)
    return out.getvalue()


def noisy(size=(320, 240)) -> Image.Image:
    """An image whose compressed bytes are spread over the whole file (so a cut-off copy misses pixels)."""
    return Image.effect_noise(size, 80).convert("RGB")


def bomb() -> bytes:
    """A decompression bomb: a 1-bit 12,000 x 12,000 PNG (144 megapixels) of about 20 KB."""
    return png_bytes(Image.new("1", (12_000, 12_000), 1), optimize=True)


BAD = {
    "empty.png": (b"", "empty (0 bytes)"),
    "drawing.png": ((b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                    b'<rect width="10" height="10"/></svg>'), "an SVG drawing"),
    "page.png": (b"<!DOCTYPE html><html><body><p>not an image</p></body></html>", "an HTML page"),
    "renamed.png": (png_bytes(noisy(), "JPEG"), "is a JPEG image"),
    "cut.png": (png_bytes(noisy())[:3000], "cut off or damaged"),
    "cut.jpg": (png_bytes(noisy(), "JPEG", quality=90)[:2500], "cut off or damaged"),
    "bomb.png": (bomb(), "over the 40-megapixel limit"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_image_gets_one_sentence_naming_it(name):
    data, says = BAD[name]
    with pytest.raises(ImageError, match=re.escape(says)) as err:
        open_image(data, name)
    sentence = str(err.value)
    assert name in sentence and "\n" not in sentence and sentence.endswith(".") and sentence.count(". ") == 0
    with pytest.raises(DocumentError, match=re.escape(says)):  # the upload path says the same
        extract(data, name, image_text=lambda image: "never called")


def test_the_pixel_cap_is_read_from_the_header_before_decoding():
    data = bomb()
    assert len(data) < 100_000  # kilobytes on disk ...
    with pytest.raises(ImageError, match="12,000 x 12,000 pixels"):
        open_image(data, "bomb.png")  # ... refused without decoding 144 megapixels
    assert open_image(data, "bomb.png", max_pixels=200_000_000).size == (12_000, 12_000)  # the cap is a setting


def test_good_images_open_in_rgb_and_an_animation_from_its_first_frame():
    for name, fmt in (("a.png", "PNG"), ("a.jpeg", "JPEG"), ("a.webp", "WEBP")):
        image = open_image(png_bytes(noisy((64, 48)), fmt), name)
        assert image.mode == "RGB" and image.size == (64, 48)
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    first = open_image(gif.getvalue(), "anim.gif")
    assert first.getpixel((5, 5))[0] > 200 and first.getpixel((5, 5))[2] < 50  # red: the first frame


def test_an_image_with_ocr_off_or_without_text_is_refused_plainly():
    data = SCREENSHOT.read_bytes()
    with pytest.raises(DocumentError, match="KVC_OCR=true"):
        extract(data, "shot.png")
    with pytest.raises(DocumentError, match="OCR found no text in 'blank.png'"):
        extract(png_bytes(Image.new("RGB", (400, 300), "white")), "blank.png", image_text=lambda image: " \n")


@pytest.mark.slow
def test_a_real_screenshot_reads_with_a_character_error_rate_under_5_percent():
    doc = extract(SCREENSHOT.read_bytes(), SCREENSHOT.name, image_text=PageOcr().read_text)
    rate = cer(SCREENSHOT_TEXT, doc.text)
    print(f"OCR CER {SCREENSHOT.name}: {rate:.2%}")
    assert rate < 0.05, (rate, doc.text)
    assert doc.kind == "image" and doc.page_count == 1 and doc.ocr_pages == 1


@pytest.mark.slow
def test_an_uploaded_screenshot_is_searchable_citable_and_bad_ones_leave_the_library_alone(tmp_path, tiny_model,
                                                                                           embedder):
    services = build_services(make_settings(tmp_path / "data", tiny_model), embedder=embedder)
    try:
        shot = tmp_path / "order.png"
        shot.write_bytes(SCREENSHOT.read_bytes())
        doc, created = services.documents.upload("local", shot)
        assert created and doc.kind == "image" and doc.ocr_pages == 1
        for name, (data, says) in BAD.items():
            bad = tmp_path / name
            bad.write_bytes(data)
            with pytest.raises(DocumentError, match=re.escape(says)):
                services.documents.upload("local", bad)
        assert [d.doc_id for d in services.documents.list("local")] == [doc.doc_id]
        hit = services.documents.search("local", "What is the estimated delivery date?", None, 1)[0]
        assert hit.doc_id == doc.doc_id and hit.ocr and "Thursday 14 March" in hit.text, hit
        start = hit.text.index("Thursday 14 March")
        source = {"doc_id": doc.doc_id, "part": 0, "page": 1, "start": 0, "end": 0,
                  "quote": hit.text[start:start + len("Thursday 14 March")], "name": doc.name}
        view = services.viewer.open("local", source)
        assert view.marked and view.image is not None and view.image.size == Image.open(shot).size
        assert view.quote == "Thursday 14 March"
        left, top, right, bottom = ImageChops.difference(view.image, Image.open(shot).convert("RGB")).getbbox()
        assert 160 < top < bottom < 205 and 200 < left < right < 380, (left, top, right, bottom)  # on those words
    finally:
        services.close()
