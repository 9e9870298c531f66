"""Images as documents: a screenshot, a photo of a page or a chart is read by OCR into one page of text,
so it can be searched, cached and cited like any other document.

Pillow decodes the image. Untrusted bytes are checked before any pixel is decoded: the real format comes
from the file's signature (an SVG drawing, an HTML page or a PDF renamed ``.png`` is named as what it is),
the pixel count from the header is capped (a decompression bomb is a few kilobytes that decode to
gigabytes; Pillow's own guard, ``Image.MAX_IMAGE_PIXELS``, only warns below twice its limit), and a
truncated file fails while it is decoded, with one sentence, instead of being padded with grey.
An animated GIF or WebP is read from its first frame.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF"}
MAX_IMAGE_PIXELS = 40_000_000  # default cap: a 48 MP phone photo is 8000 x 6000; OCR of more takes minutes here
# Leading bytes of the image formats taken (Pillow's own plugins check the same signatures).
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"))
FORMAT_NAMES = {"PNG": "a PNG image", "JPEG": "a JPEG image", "WEBP": "a WebP image", "GIF": "a GIF image"}

ImageText = Callable[[Image.Image], str]  # PageOcr.read_text: an image -> its text in reading order


class ImageError(ValueError):
    """An image cannot be read; ``str(err)`` is one sentence telling the user what happened and what to do."""


def image_format(data: bytes) -> str | None:
    """The image format of ``data`` from its signature.

    Args:
        data: the file's bytes (only the first 16 are looked at).

    Returns:
        ``PNG``, ``JPEG``, ``GIF`` or ``WEBP``; None when the bytes are none of these.
    """
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _what_it_is(data: bytes) -> str:
    """A few words naming what non-image bytes look like, for the mislabelled-file sentence."""
    head = data[:2048].lstrip().lower()
    if b"<svg" in head:
        return "an SVG drawing (text, not pixels)"
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if b"%PDF-" in data[:1024]:
        return "a PDF"
    if data.startswith(b"PK\x03\x04"):
        return "a ZIP archive or Office file"
    return "not an image Pillow can read"


def open_image(data: bytes, filename: str, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an uploaded image, first frame only, after checking what it is and how large.

    Args:
        data: the file's bytes.
        filename: the name the user gave it; its extension says which format is expected.
        max_pixels: the most pixels (width x height) accepted.

    Returns:
        The decoded image in RGB mode (the first frame of an animation).

    Raises:
        ImageError: 0 bytes; contents that are not an image (SVG, HTML, PDF renamed); a format other than
            the extension's; more than ``max_pixels`` pixels; a truncated or corrupt file.
    """
    if not data:
        raise ImageError(f"'{filename}' is empty (0 bytes); choose a file that has content.")
    ext = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    expected, actual = IMAGE_EXTENSIONS.get(ext), image_format(data)
    if actual is None:
        raise ImageError(f"'{filename}' is named {ext or 'without an extension'} but its contents are "
                         f"{_what_it_is(data)}; save it as PNG, JPEG, WebP or GIF and upload it again.")
    if expected and actual != expected:
        raise ImageError(f"'{filename}' is named {ext} but is {FORMAT_NAMES[actual]}; rename it to match "
                         "and upload it again.")
    too_large = (f"over the {max_pixels / 1e6:.0f}-megapixel limit; scale it down and upload it again "
                 "(or raise KVC_MAX_IMAGE_PIXELS).")
    try:
        with warnings.catch_warnings():  # the pixel count is checked below, against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as exc:  # past twice Pillow's own limit (about 179 megapixels)
        raise ImageError(f"'{filename}' has more pixels than Pillow will decode, {too_large}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"'{filename}' could not be read as {FORMAT_NAMES[actual]} (its header is damaged); "
                         "save or export it again and upload it again.") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"'{filename}' is {width:,} x {height:,} pixels, {too_large}")
    try:
        image.seek(0)
        return image.convert("RGB")  # decodes every pixel: a cut-off file fails here
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"'{filename}' could not be decoded as {FORMAT_NAMES[actual]} (it is cut off or "
                         "damaged); save or export it again and upload it again.") from exc
