"""SQuAD v1.1 dev as a document collection, ingested through the app's own pipeline.

Shared by ``retrieval.py`` (hit@k), ``search_latency.py`` and ``answers.py``. Each of the 48 articles becomes
one text document: its title, then its paragraphs separated by blank lines.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.config import Settings
from backend.services import Services, build_services

SQUAD = ROOT.parent / "shared" / "testdata" / "qa" / "squad-dev-v1.1.json"
OWNER = "bench"


@dataclass(frozen=True)
class Question:
    """One SQuAD question and its gold answer strings (any of them counts)."""

    text: str
    answers: tuple[str, ...]
    article: str


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, by linear interpolation."""
    return float(np.quantile(np.asarray(values), q))


def articles(limit: int | None = None) -> list[tuple[str, str]]:
    """``(title, text)`` of every article (the first ``limit``), in file order."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:limit]
    return [(a["title"], a["title"].replace("_", " ") + "\n\n" + "\n\n".join(p["context"] for p in a["paragraphs"]))
            for a in data]


def questions(limit: int | None = None) -> list[Question]:
    """All 10,570 questions with their answers (those of the first ``limit`` articles)."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:limit]
    return [Question(qa["question"], tuple(dict.fromkeys(a["text"] for a in qa["answers"])), art["title"])
            for art in data for p in art["paragraphs"] for qa in p["qas"]]


def ask(svc: Services, question: str, doc_ids: list[str], sampling, mode: str = "auto") -> dict:
    """One question in a fresh session through ``ChatService`` (deleted afterwards): the ``done`` event's
    text as ``answer`` and its data (metrics, sources, grounding, retrieved...).

    Raises:
        RuntimeError: the turn ended without a ``done`` event.
    """
    sid = svc.sessions.create(OWNER)
    try:
        for event in svc.chat.stream_turn(OWNER, sid, question, doc_ids, sampling, mode=mode):
            if event.kind == "done":
                return {"answer": event.text, **event.data}
    finally:
        svc.sessions.delete(OWNER, sid)
        svc.chat.forget_session(OWNER, sid)
    raise RuntimeError("no done event")


def services(data_dir: Path | None = None, embedder=None) -> Services:
    """The app's services (no LLM) on a fresh data dir, optionally sharing a loaded embedder."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="kvc-bench-"))
    settings = Settings(data_dir=data_dir, models_dir=data_dir / "none", model_path=None, auto_download=False)
    return build_services(settings, embedder=embedder)


def ingest(svc: Services, limit: int | None = None) -> list[str]:
    """Upload every article (the first ``limit``) as ``<title>.txt`` through ``DocumentService.upload``; returns
    doc ids."""
    folder = Path(tempfile.mkdtemp(prefix="kvc-squad-"))
    ids = []
    try:
        for title, text in articles(limit):
            path = folder / f"{title}.txt"
            path.write_text(text, encoding="utf-8")
            row, _ = svc.documents.upload(OWNER, path)
            ids.append(row.doc_id)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return ids
