"""The questions a verdict is calibrated on: SQuAD 2.0's adversarial articles (human-written unanswerable questions
beside answerable ones, CC BY-SA 4.0; Rajpurkar, Jia and Liang 2018), each article cut into a document, and how an
answer is graded against them (SQuAD's own answer normalisation).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SHARED_TUNING = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "qa" / "squad2-adversarial-tuning.json"


@dataclass
class TuningQuestion:
    """One question of the tuning set.

    Attributes:
        question: as written. golds: its gold answers (empty when unanswerable).
        kind: ``answerable`` or ``adversarial`` (SQuAD 2.0's ``is_impossible``).
        paragraph: the paragraph it was written on. title: its article, as the document is named.
        plausible: for an unanswerable one, the answers a reader falls for (SQuAD 2.0's ``plausible_answers``).
    """

    question: str
    golds: tuple[str, ...]
    kind: str
    paragraph: str
    title: str
    plausible: tuple[str, ...] = ()


def normalize(text: str) -> str:
    """SQuAD's answer normalisation (lower case, no punctuation or articles, single spaces; its official
    ``evaluate-v1.1.py``)."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def contains_gold(answer: str, golds: tuple[str, ...] | list[str]) -> bool:
    """The normalised ``answer`` contains a normalised gold answer (never, for no golds)."""
    norm = normalize(answer)
    return any(normalize(g) and normalize(g) in norm for g in golds)


def cut_article(article: dict, doc_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, str, list[dict]]:
    """A SQuAD article as a document: its title, then its first paragraphs while the text stays within
    ``doc_tokens`` tokens (``count_tokens``: the model's tokenizer); returns the title, the text and the paragraphs
    kept."""
    title = article["title"].replace("_", " ")
    kept, text = [], title
    for p in article["paragraphs"]:
        candidate = text + "\n\n" + p["context"]
        if count_tokens(candidate) > doc_tokens:
            break
        kept.append(p)
        text = candidate
    return title, text, kept


def tuning_questions(path: Path, n_articles: int, per_article: int, unanswerable: int, doc_tokens: int,
                     count_tokens: Callable[[str], int], offset: int = 0
                     ) -> tuple[list[tuple[str, str]], list[TuningQuestion]]:
    """The first ``n_articles`` of a SQuAD 2.0 file as documents (``cut_article``) and, per article,
    ``per_article`` answerable and ``unanswerable`` unanswerable questions, evenly spaced from ``offset``, all from
    the kept paragraphs.

    Returns:
        ``([(title, text), ...], questions)``.

    Raises:
        ValueError: the file is not SQuAD 2.0 JSON (with a sentence saying so).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"][:n_articles]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{Path(path).name} could not be read as SQuAD 2.0 JSON ({exc}); give the tuning set's "
                         "path with --tuning.") from exc
    docs, questions = [], []
    for art in data:
        title, text, kept = cut_article(art, doc_tokens, count_tokens)
        docs.append((title, text))
        qas = [(qa, p["context"]) for p in kept for qa in p["qas"]]
        for kind, want, impossible in (("answerable", per_article, False), ("adversarial", unanswerable, True)):
            chosen = [(qa, c) for qa, c in qas if bool(qa.get("is_impossible")) == impossible]
            step = max(1, len(chosen) // max(1, want))
            for qa, context in chosen[offset::step][:want]:
                golds = () if impossible else tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                questions.append(TuningQuestion(qa["question"], golds, kind, context, title,
                                                tuple(a["text"] for a in qa.get("plausible_answers", []))))
    return docs, questions
