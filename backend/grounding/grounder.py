"""The grounding service: each document's passage index, built once and kept, and attribution over
the documents a turn selected."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from backend.documents import DocumentService, Embedder
from backend.grounding.attribution import Attribution, PassageIndex, attribute
from backend.grounding.calibration import Calibration
from backend.grounding.passages import passages_of

INDEX_CACHE_DOCUMENTS = 64  # passage indexes kept in memory (a 6k-token document's is ~0.3 MB)


class Grounder:
    """Attributes answers to passages of the user's documents.

    Args:
        documents: where the documents' stored pages come from.
        cache_size: passage indexes kept (least recently used dropped first).
        calibration: returns the answering model's verdict calibration, or None when it has none
            (``calibration.calibration_for``; the wiring knows which model answers). Default: none.
        reader: ``reader(owner, question, sentence)``, the answering model's P(yes) that the sentence answers the
            question, or None when it cannot be asked (``backend.chat.reader_check``). Default: never asked.
        ask_reader: ``auto`` asks it only where the calibration weighs it (``Calibration.weighs``), ``always`` for
            every judged answer (a calibration being fitted), ``off`` never.
    """

    def __init__(self, documents: DocumentService, cache_size: int = INDEX_CACHE_DOCUMENTS,
                 calibration: Callable[[], Calibration | None] = lambda: None,
                 reader: Callable[[str, str, str], float | None] | None = None, ask_reader: str = "auto"):
        self.documents = documents
        self.cache_size = cache_size
        self.calibration = calibration
        self.reader, self.ask_reader = reader, ask_reader
        self._indexes: OrderedDict[tuple[str, str], PassageIndex] = OrderedDict()
        self._lock = threading.Lock()

    def index(self, owner: str, doc_id: str) -> PassageIndex:
        """The passage index of one of ``owner``'s documents (built from its stored pages on first use).

        Raises:
            DocumentError: unknown id, or its stored text is gone.
        """
        key = (owner, doc_id)
        with self._lock:
            found = self._indexes.get(key)
            if found is not None:
                self._indexes.move_to_end(key)
                return found
        row = self.documents.get(owner, doc_id)
        built = PassageIndex.build(passages_of(doc_id, row.name, self.documents.pages(owner, doc_id)))
        with self._lock:
            self._indexes[key] = built
            while len(self._indexes) > self.cache_size:
                self._indexes.popitem(last=False)
        return built

    def drop(self, doc_id: str) -> None:
        """Forget a document's index (its text changed, or it was deleted)."""
        with self._lock:
            for key in [k for k in self._indexes if k[1] == doc_id]:
                del self._indexes[key]

    def attribute(self, owner: str, doc_ids: list[str], question: str, answer: str) -> Attribution:
        """Sources and grounding verdict of ``answer`` over the selected documents (see ``attribute``);
        ``seconds`` counts the whole call, building a document's index included.

        Args:
            owner: the user.
            doc_ids: the documents the turn selected.
            question: the question as typed.
            answer: the whole answer.

        Raises:
            DocumentError: an unknown id, or a document's stored text is gone.
        """
        started = time.perf_counter()
        calibration = self.calibration()
        found = attribute(question, answer, [self.index(owner, d) for d in doc_ids], self.similarity, calibration,
                          self._reader_for(owner, calibration))
        return replace(found, seconds=time.perf_counter() - started)

    def _reader_for(self, owner: str, calibration: Calibration | None) -> Callable[[str, str], float | None] | None:
        """The reader's yes/no for this answer, where ``ask_reader`` and the calibration call for it."""
        weighs = calibration is not None and calibration.weighs("reader_yes")
        if self.reader is None or self.ask_reader == "off" or (self.ask_reader == "auto" and not weighs):
            return None
        return lambda question, sentence: self.reader(owner, question, sentence)

    def similarity(self, question: str, sentence: str) -> float | None:
        """MiniLM's cosine of a question and a sentence (``verdict.Signals.similarity``), or None while the
        embedding model is still loading after a start: a verdict never waits for it."""
        embedder = self.documents.embedder
        return cosine(embedder, question, sentence) if embedder.ready else None


def cosine(embedder: Embedder, question: str, sentence: str) -> float:
    """MiniLM's cosine of ``question`` (its vector from the embedder's query cache, which a search of the same
    question filled) and ``sentence`` (encoded here, kept out of that cache: a cited sentence is no query)."""
    return float(embedder.encode_query(question) @ embedder.encode([sentence])[0])
