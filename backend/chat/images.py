"""Images attached to a chat message: read and checked, kept under ``data_dir/images/`` so the history can
show them, refused plainly when the loaded model cannot see, and laid into the turn's prompt for the
vision projector (``backend.inference.vision``).

An image is named by the SHA-256 of its decoded pixels, so the same picture sent twice is stored once and
its KV entries (keyed by the same pixels) are found again.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from backend.chat.planner import ChatError
from backend.chat.prompts import Prompt
from backend.config import Settings
from backend.documents import ImageError, PageOcr, open_image
from backend.inference import MARKER, Engine, Job, Projector, Sampling, Scheduler, VisionPrompt, pixel_digest
from backend.storage.disk import write_atomically

OCR_SHOWN_CHARS = 300  # characters of an image's OCR text quoted in the text-only refusal
DESCRIBE_PROMPT = "Describe this image in two sentences: what it shows, and any chart, table or diagram in it."
DESCRIBER = "system:describe"  # the owner of description jobs (a sequence is emptied between owners)


def _bytes_of(item: str | Path) -> tuple[bytes, str]:
    """The bytes and a name for one attachment: a file path, or a ``data:image/...;base64,`` URL."""
    text = str(item)
    if text.startswith("data:"):
        head, _, payload = text.partition(",")
        if ";base64" not in head:
            raise ChatError("A pasted image must be a base64 data URL (data:image/png;base64,...); paste it again.")
        try:
            return base64.b64decode(payload, validate=True), "pasted-image." + head[5:].split(";")[0].split("/")[-1]
        except (binascii.Error, ValueError) as exc:
            raise ChatError("The pasted image's data is not valid base64; paste it again.") from exc
    path = Path(text)
    try:
        return path.read_bytes(), path.name
    except OSError as exc:
        raise ChatError(f"The image '{path.name}' could not be read; attach it again.") from exc


def load_images(items: list[str | Path], settings: Settings) -> list[np.ndarray]:
    """Read and check a message's images.

    Args:
        items: file paths or data URLs, in the order they go into the message.
        settings: ``max_images_per_message``, ``max_image_mb``, ``max_image_pixels``.

    Returns:
        uint8 RGB arrays, shape (height, width, 3).

    Raises:
        ChatError: too many images, one too large, or one that is not a readable image (0 bytes, cut off,
            SVG or HTML renamed, a decompression bomb); one sentence naming it.
    """
    if len(items) > settings.max_images_per_message:
        raise ChatError(f"A message can carry at most {settings.max_images_per_message} images and this one has "
                        f"{len(items)}; send fewer (or raise KVC_MAX_IMAGES_PER_MESSAGE).")
    out = []
    for item in items:
        data, name = _bytes_of(item)
        if len(data) > settings.max_image_mb * 2**20:
            raise ChatError(f"'{name}' is {len(data) / 2**20:.1f} MiB, over the {settings.max_image_mb:.0f} MiB "
                            "limit for an image in a message; send a smaller one (or raise KVC_MAX_IMAGE_MB).")
        try:
            out.append(np.asarray(open_image(data, name, settings.max_image_pixels)))
        except ImageError as exc:
            raise ChatError(str(exc)) from exc
    return out


def image_name(rgb: np.ndarray) -> str:
    """The stored file name of an image: its ``pixel_digest``, shortened, ``.png``."""
    return pixel_digest(rgb)[:32] + ".png"


def keep_images(folder: Path, images: list[np.ndarray]) -> list[str]:
    """Store a message's images as PNG files (once per picture), so the history can show them.

    Args:
        folder: ``data_dir/images``.
        images: uint8 RGB arrays.

    Returns:
        The file names, in order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for rgb in images:
        name = image_name(rgb)
        try:
            os.utime(folder / name)  # kept already: now in use again, so a running sweep leaves it
        except FileNotFoundError:
            out = io.BytesIO()
            Image.fromarray(rgb).save(out, format="PNG")
            write_atomically(folder / name, out.getvalue())
        names.append(name)
    return names


def sweep_images(folder: Path, referenced: set[str], before: float) -> int:
    """Delete the kept images no stored message refers to: those of deleted or expired chats, and of questions
    a crash cut short. An image kept at or after ``before`` is left alone (its question may still be being
    answered, its message not yet saved).

    Args:
        folder: ``data_dir/images``.
        referenced: every name a stored message holds (``SessionStore.image_names``).
        before: Unix seconds; only files last written earlier go.

    Returns:
        How many files were deleted.
    """
    gone = 0
    for path in folder.glob("*.png") if folder.is_dir() else ():
        try:
            if path.name not in referenced and path.stat().st_mtime < before:
                path.unlink()
                gone += 1
        except OSError:  # gone already, or not ours to delete: the next sweep tries again
            continue
    return gone


def text_only_refusal(images: list[np.ndarray], ocr: PageOcr | None) -> str:
    """The one sentence for an image sent to a model that cannot see, with the text OCR reads in it.

    Args:
        images: the message's images.
        ocr: reads the text in them (None when OCR is off).

    Returns:
        The sentence, ending with the first ``OCR_SHOWN_CHARS`` characters OCR found (when any).
    """
    sentence = ("The loaded model reads text only, so it cannot see images; load a vision model (a GGUF with its "
                "mmproj projector file in the models folder), or upload the image as a document to ask about its text")
    if ocr is None:
        return sentence + "."
    found = " ".join(" ".join(ocr.read_text(Image.fromarray(rgb)).split()) for rgb in images).strip()
    if not found:
        return sentence + " (OCR finds no text in it)."
    shown = found[:OCR_SHOWN_CHARS] + ("…" if len(found) > OCR_SHOWN_CHARS else "")
    return f"{sentence}; OCR reads in it: “{shown}”"


def history_images(messages: list[dict], history: list[dict], settings: Settings, room: int) -> list[np.ndarray]:
    """Lay the images of a chat's latest questions back into its history, so a follow-up ("and the total?")
    still sees the picture it is about. The prompt then starts as it did when that question was asked, so
    the image's saved prefix is restored, not encoded again.

    Args:
        messages: the session's stored messages (a user message's ``images`` are file names under
            ``data_dir/images``).
        history: the same messages as ``{"role", "content"}`` dicts; the user messages whose images are laid
            in get their markers (``with_markers``) in place.
        settings: ``data_dir`` and ``max_image_pixels``.
        room: at most this many images, those of the latest questions (older ones keep their text only).

    Returns:
        The images, uint8 RGB arrays, in prompt order (a file that is gone is left out with its marker).
    """
    folder, chosen = settings.path("images"), []
    for i in range(len(messages) - 1, -1, -1):
        names = (messages[i].get("images") or []) if messages[i]["role"] == "user" else []
        if not names:
            continue
        if len(names) > room:
            break
        pictures = []
        for name in names:
            try:
                pictures.append(np.asarray(open_image((folder / name).read_bytes(), name, settings.max_image_pixels)))
            except (OSError, ImageError):
                continue
        room -= len(pictures)
        chosen.append((i, pictures))
    out = []
    for i, pictures in reversed(chosen):
        history[i] = {**history[i], "content": with_markers(history[i]["content"], len(pictures))}
        out.extend(pictures)
    return out


def with_markers(question: str, n_images: int) -> str:
    """The question as the prompt carries it: one media marker per image, on a line before the text."""
    return MARKER * n_images + "\n" + question if n_images else question


@dataclass
class ImageTurn:
    """A turn's prompt with its images laid in.

    Attributes:
        tokens: the prompt (the cached prefix's tokens, then the rest with image placeholders).
        media: ``{start: span}`` for ``SeqRun``.
        image_prefix: tokens up to the end of the last image: saved as a cache entry, so a question about the
            same image in any chat restores it instead of encoding it again.
        vision: the tokenized rest (closed when the turn ends).
    """

    tokens: list[int]
    media: dict
    image_prefix: list[int]
    vision: VisionPrompt


def image_turn(projector: Projector, prompt: Prompt, images: list[np.ndarray], room: int) -> ImageTurn:
    """Lay a turn's images into its prompt: the prefix's tokens are kept as they are (its cache entries
    still match), the text after it is tokenized again by libmtmd with the images in place of the markers.

    Args:
        projector: the loaded model's vision projector.
        prompt: the planned prompt, one marker per image.
        images: uint8 RGB arrays, in marker order.
        room: the most tokens the prompt may take (``n_ctx`` less the answer's ``max_tokens``); the plan
            counted each image as its marker's few tokens.

    Raises:
        EngineError: libmtmd could not prepare an image.
        ChatError: with its images the prompt takes more than ``room`` tokens.
    """
    rest = projector.prompt(prompt.text[prompt.prefix_chars:], images, offset=prompt.n_prefix)
    tokens = prompt.prefix_tokens + rest.tokens
    if len(tokens) > room:
        rest.close()
        taken = sum(span.n_tokens for span in rest.spans.values())
        raise ChatError(f"With its images ({taken:,} tokens) the question needs {len(tokens):,} tokens, more than the "
                        f"{room:,} the model's context window leaves beside the answer; send fewer or smaller images, "
                        "ask in a new chat, or load the model with a larger n_ctx.")
    end = max(span.start + span.n_tokens for span in rest.spans.values())
    return ImageTurn(tokens, rest.spans, tokens[:end], rest)


def describe_image(engine: Engine, scheduler: Scheduler, image: Image.Image, sampling: Sampling) -> str:
    """A short description of an uploaded image by the loaded vision model, stored beside its OCR text so the
    image can be found by what it shows.

    Args:
        engine: the engine; without a vision projector attached nothing is described.
        scheduler: runs the description as a job beside the chat answers.
        image: the image (any mode).
        sampling: the description's settings (greedy, a few dozen tokens).

    Returns:
        The description, stripped; "" when no vision model is loaded.

    Raises:
        EngineError: llama.cpp or libmtmd failed.
    """
    with engine.lock:
        projector = engine.projector
        if not engine.loaded or projector is None:
            return ""
        text = engine.render([{"role": "user", "content": MARKER + DESCRIBE_PROMPT}])
        prompt = projector.prompt(text, [np.asarray(image.convert("RGB"))])
    try:
        job = scheduler.submit(Job(DESCRIBER, prompt.tokens, sampling, media=prompt.spans))
        return "".join(job.stream()).strip()
    finally:
        prompt.close()
