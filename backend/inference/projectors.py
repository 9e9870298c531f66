"""Pairing a vision model with its projector: llama.cpp's multimodal models ship as two GGUFs, the text
model and an ``mmproj`` file (``general.architecture = clip``) holding the vision tower and projection.

A projector goes with a model when it sits in the same folder, its name starts with ``mmproj`` (the
convention of llama.cpp's converter and of the GGUF repositories on Hugging Face, e.g.
``mmproj-SmolVLM2-256M-Video-Instruct-Q8_0.gguf``), and its header's ``clip.vision.projection_dim`` equals
the model's ``<arch>.embedding_length`` (its image embeddings are the model's hidden size). Among several
that fit, the one whose name shares the longest run with the model's name wins.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "mmproj"
VISION_STAGES = ("loading the vision projector", "encoding a probe image")  # the preflight child's, after the text ones


def is_projector(path: Path) -> bool:
    """True for a file named like a projector (``mmproj*.gguf``); it is not a chat model to load alone."""
    return Path(path).name.lower().startswith(PREFIX)


def _header_int(path: Path, key: str) -> int | None:
    """An integer field of a GGUF header (``{arch}`` in ``key`` stands for its architecture); None when
    unreadable or absent."""
    from backend.inference.gguf_header import read_header

    try:
        header = read_header(path)
    except (ValueError, OSError):
        return None
    value = header.fields.get(key.format(arch=header.architecture))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def find_projector(model: Path) -> Path | None:
    """The projector that goes with ``model`` (see the module docstring).

    Args:
        model: the text model's GGUF.

    Returns:
        The ``mmproj`` file, or None when the folder holds none that fits.
    """
    model = Path(model)
    candidates = sorted(p for p in model.parent.glob("*.gguf") if is_projector(p) and p.is_file())
    if not candidates:
        return None
    width = _header_int(model, "{arch}.embedding_length")
    fitting = [p for p in candidates if width is not None and _header_int(p, "clip.vision.projection_dim") == width]
    if not fitting:
        log.info("no projector in %s fits %s (hidden size %s)", model.parent, model.name, width)
        return None

    def shared(p: Path) -> int:
        a, b = model.stem.lower(), p.stem.lower()[len(PREFIX):]
        return difflib.SequenceMatcher(None, a, b).find_longest_match(0, len(a), 0, len(b)).size

    return max(fitting, key=shared)
