"""Grounding: where an answer comes from in the user's documents. Each document's sentences with their
page, section and character offsets (``passages``), the sentences that support an answer and a verdict
(``supported``, ``partial``, ``not_found``; ``attribution``, over the content words of ``words``, with the
answering model's ``calibration``), the per-document index cache
(``grounder``), and the source viewer that renders a cited page with the quote marked (``viewer``).
Reads ``documents``; imports no other package.
"""

from backend.grounding.attribution import VERDICTS, Attribution, PassageIndex, Source, attribute
from backend.grounding.calibration import Calibration, calibration_for, read_calibration
from backend.grounding.grounder import Grounder
from backend.grounding.passages import Passage, passages_of, sentence_spans
from backend.grounding.viewer import SourceView, SourceViewer, locate, mark_pdf_page
from backend.grounding.words import is_abstention, words

__all__ = ["VERDICTS", "Attribution", "Calibration", "Grounder", "Passage", "PassageIndex", "Source", "SourceView", "SourceViewer",
           "attribute", "calibration_for", "is_abstention", "locate", "mark_pdf_page", "passages_of", "read_calibration", "sentence_spans",
           "words"]
