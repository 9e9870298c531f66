"""Images in a prompt: a vision projector (an ``mmproj`` GGUF) attached to the loaded text model through
llama.cpp's multimodal library, ``libmtmd`` (llama-cpp-python's ``llama_cpp.mtmd_cpp`` bindings).

``mtmd_tokenize`` splits a prompt with one media marker per image into chunks: text chunks (token ids)
and image chunks (the image's preprocessed tiles, to be encoded by the vision tower into embeddings).
Here the prompt becomes one flat token list, as every other prompt of the app is: text tokens as they
are, and for each image chunk ``n_tokens`` *placeholder* ids, negative numbers derived from the image's
content hash and the projector's identity. So the machinery built on token lists works unchanged for
images: a sequence holding the same image reuses its KV entries by the longest common prefix, a saved
prefix that ends after an image is found on disk by its token hash, and another image (or projector)
never matches. ``SeqRun`` evaluates an image chunk where its placeholders start, in the turn's own
sequence (``mtmd_helper_eval_chunk_single`` with the sequence id), between batched decode steps.

Every function that touches the model runs under ``Engine.lock``, like the rest of the engine.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import mtmd_cpp as mtmd

from backend.inference.types import EngineError

log = logging.getLogger(__name__)

MARKER = "<__media__>"  # libmtmd's default media marker (mtmd_default_marker): one per image in the prompt text
TEXT_CHUNK = 0  # mtmd_input_chunk_type of text (the other: an image)


def placeholder_ids(image_id: str, n_tokens: int) -> list[int]:
    """The token ids an image chunk stands as in a flat prompt.

    Args:
        image_id: hex digest naming the image and projector (``Projector.image_id``).
        n_tokens: the chunk's token count (its KV cells).

    Returns:
        ``n_tokens`` negative ints within int32 (never a vocabulary id; cache keys hash token ids as int32),
        the same for the same image and projector, distinct per position.
    """
    base = int(image_id[:8], 16)
    return [-1 - ((base + i) & 0x3FFF_FFFF) for i in range(n_tokens)]


def count_images(tokens) -> int:
    """How many distinct images a flat prompt holds. Each image chunk is a run of ``placeholder_ids`` (negative
    ids, each one less than the one before), and every chunk of one image (SmolVLM's tiles) starts from the
    same id, so images are the distinct first ids of the runs.

    Args:
        tokens: a prompt's token ids (ints), images as their placeholder ids.
    """
    firsts, before = set(), 0
    for t in tokens:
        if t < 0 and (before >= 0 or t != before - 1):
            firsts.add(t)
        before = t
    return len(firsts)


def pixel_digest(rgb: np.ndarray) -> str:
    """The SHA-256 of an image's shape and pixels, hex: the same picture, however it was sent or named, has
    the same digest (a chat question's stored image file is named by it).

    Args:
        rgb: uint8 array, shape (height, width, 3).
    """
    digest = hashlib.sha256(np.asarray(rgb.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(rgb).tobytes())
    return digest.hexdigest()


@dataclass
class ImageSpan:
    """One image chunk of a prompt, evaluated into a sequence where its placeholders start.

    Attributes:
        start: position of its first placeholder in the prompt's tokens.
        n_tokens: its placeholders (KV cells), tokens.
        image_id: the image and projector digest.
        chunk: the ``mtmd_input_chunk`` pointer (owned by the ``VisionPrompt``).
        projector: the projector that encodes it.
    """

    start: int
    n_tokens: int
    image_id: str
    chunk: object
    projector: Projector

    def evaluate(self, seq: int, n_past: int, n_batch: int) -> float:
        """Encode the image chunk and decode its embeddings into sequence ``seq`` at ``n_past``.

        Caller holds ``Engine.lock``.

        Returns:
            Seconds taken (encode plus decode).

        Raises:
            EngineError: libmtmd failed.
        """
        return self.projector.evaluate(self, seq, n_past, n_batch)


@dataclass
class VisionPrompt:
    """A prompt with images, as a flat token list and the image spans within it.

    Attributes:
        tokens: text token ids and image placeholders, in order.
        spans: ``{start position: ImageSpan}`` (positions count the ``offset`` given to ``Projector.prompt``).
    """

    tokens: list[int]
    spans: dict[int, ImageSpan] = field(default_factory=dict)
    _chunks: object = None

    @property
    def image_tokens(self) -> int:
        """Placeholders in the prompt: the KV cells its images take."""
        return sum(s.n_tokens for s in self.spans.values())

    def close(self) -> None:
        """Free the chunks (the spans are unusable afterwards)."""
        if self._chunks is not None:
            mtmd.mtmd_input_chunks_free(self._chunks)
            self._chunks, self.spans = None, {}


class Projector:
    """A vision projector attached to the loaded text model.

    Args:
        llm: the loaded ``llama_cpp.Llama`` (its ``model`` pointer); the projector must be freed
            (``close``) before it is.
        path: the ``mmproj`` GGUF.
        n_threads: CPU threads for the vision encoder.
        use_gpu: offload the encoder when llama.cpp was built with a GPU backend.

    Raises:
        EngineError: libmtmd could not load the file, or it has no vision encoder.
    """

    def __init__(self, llm: llama_cpp.Llama, path: Path, n_threads: int, use_gpu: bool = False):
        self.path, self._lctx = Path(path), llm.ctx  # image embeddings are decoded into the text model's context
        params = mtmd.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.print_timings, params.warmup = use_gpu, n_threads, False, False
        self._ctx = mtmd.mtmd_init_from_file(str(self.path).encode(), llm.model, params)
        if not self._ctx:
            raise EngineError(f"'{self.path.name}' could not be loaded as a vision projector for this model; "
                              "check that it is the mmproj file made for it.")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise EngineError(f"'{self.path.name}' has no vision encoder; choose the model's image projector.")
        stat = self.path.stat()
        self.identity = hashlib.sha256(f"{self.path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:16]

    def image_id(self, rgb: np.ndarray) -> str:
        """A digest of an image's pixels and this projector (images are keyed by content, not by name).

        Args:
            rgb: uint8 array, shape (height, width, 3).
        """
        return hashlib.sha256(f"{self.identity}:{pixel_digest(rgb)}".encode()).hexdigest()

    def prompt(self, text: str, images: list[np.ndarray], offset: int = 0) -> VisionPrompt:
        """Tokenize a prompt whose text holds one ``MARKER`` per image.

        Args:
            text: the rendered prompt (chat template applied), special tokens written out.
            images: uint8 RGB arrays, shape (height, width, 3), in marker order.
            offset: tokens that will come before these (a cached prefix tokenized on its own): the spans'
                ``start`` and the ``spans`` keys count them.

        Returns:
            The flat prompt; call ``close`` when done with it.

        Raises:
            EngineError: the markers and images do not match, or libmtmd failed.
        """
        if text.count(MARKER) != len(images):
            raise EngineError(f"The prompt has {text.count(MARKER)} image markers for {len(images)} images.")
        bitmaps = []
        try:
            for rgb in images:
                rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
                bitmap = mtmd.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], rgb.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
                mtmd.mtmd_bitmap_set_id(bitmap, self.image_id(rgb).encode())  # each image chunk carries it
                bitmaps.append(bitmap)
            raw = text.encode()
            inp = mtmd.mtmd_input_text(raw, len(raw), False, True)
            chunks = mtmd.mtmd_input_chunks_init()
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self._ctx, chunks, ctypes.byref(inp), array, len(bitmaps))
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)
        if rc != 0:
            mtmd.mtmd_input_chunks_free(chunks)
            raise EngineError(f"The image could not be prepared for the model (libmtmd returned {rc}).")
        return self._flatten(chunks, offset)

    def _flatten(self, chunks, offset: int) -> VisionPrompt:
        """The flat token list of tokenized chunks (see the module docstring)."""
        out = VisionPrompt([], _chunks=chunks)
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == TEXT_CHUNK:
                n = ctypes.c_size_t(0)
                tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                out.tokens.extend(tokens[j] for j in range(n.value))
                continue
            if mtmd.mtmd_input_chunk_get_n_pos(chunk) != mtmd.mtmd_input_chunk_get_n_tokens(chunk):
                out.close()
                raise EngineError("This vision model places image tokens at positions of their own (M-RoPE), "
                                  "which the app does not support yet; choose another vision model.")
            n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
            image_id = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
            start = offset + len(out.tokens)
            out.spans[start] = ImageSpan(start, n_tokens, image_id, chunk, self)
            out.tokens.extend(placeholder_ids(image_id, n_tokens))
        return out

    def evaluate(self, span: ImageSpan, seq: int, n_past: int, n_batch: int) -> float:
        """See ``ImageSpan.evaluate``."""
        new_n_past = llama_cpp.llama_pos(0)
        start = time.perf_counter()
        rc = mtmd.mtmd_helper_eval_chunk_single(self._ctx, self._lctx, span.chunk, n_past, seq, n_batch, False,
                                                ctypes.byref(new_n_past))
        if rc != 0:
            raise EngineError(f"The model could not read the image (libmtmd returned {rc}).")
        return time.perf_counter() - start

    def evaluate_all(self, prompt: VisionPrompt, seq: int, n_batch: int) -> int:
        """Evaluate a whole prompt, text and images, into sequence ``seq`` from position 0 with libmtmd's own
        helper (``mtmd_helper_eval_chunks``); the preflight's child uses it on a probe image.

        Returns:
            Positions the sequence holds afterwards.

        Raises:
            EngineError: libmtmd failed.
        """
        new_n_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunks(self._ctx, self._lctx, prompt._chunks, 0, seq, n_batch, True,
                                          ctypes.byref(new_n_past))
        if rc != 0:
            raise EngineError(f"The model could not read the probe image (libmtmd returned {rc}).")
        return new_n_past.value

    def close(self) -> None:
        """Free the libmtmd context (no-op when already freed)."""
        if self._ctx:
            mtmd.mtmd_free(self._ctx)
            self._ctx = None
