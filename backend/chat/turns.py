"""What a chat turn is made of: the events it streams, the validated turn waiting to run, its scheduler job,
and the source fields an answer carries. ``backend.chat.service`` runs turns made of these."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from backend.chat.planner import Plan
from backend.chat.turn_input import TurnInput
from backend.grounding import Attribution
from backend.inference import Job, Sampling, VisionPrompt
from backend.kvcache import PrefixMiss, PrefixResult, Snapshot


@dataclass(frozen=True)
class TurnEvent:
    """One streamed event of a turn.

    Attributes:
        kind: ``token`` (``text`` is the new piece of the answer), ``thinking`` (a new piece of
            the model's ``<think>`` text), ``queued`` (``data["place"]``: place in line, 1 = next),
            ``sources`` (``data["sources"]``),
            ``metrics`` (``data`` is the metrics dict) or ``done`` (``text`` is the whole answer).
    """

    kind: str
    text: str = ""
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Turn:
    """A validated, planned turn waiting to run."""

    owner: str
    session_id: str
    message: str
    plan: Plan
    sampling: Sampling
    snapshot: Snapshot | None = None
    generation: int = 0  # Engine.generation the prompt was tokenized under
    extra: TurnInput | None = None  # the user content as sent (web, memory, date, switch); history reuses it
    images: tuple = ()  # uint8 RGB arrays attached to the message (``backend.chat.images``)
    image_files: tuple[str, ...] = ()  # their stored names under data_dir/images


@dataclass(eq=False)
class TurnJob(Job):
    """A chat turn's scheduler job, with what the turn's metrics need from it.

    Attributes:
        prefix: how its sequence got the cached prefix (``PrefixMiss`` when it had to be evaluated).
        started_at: ``time.perf_counter()`` when it got its sequence (None: never did).
        submitted_at: when it was handed to the scheduler.
    """

    prefix: PrefixResult | PrefixMiss | None = None
    vision: VisionPrompt | None = None  # an image turn's libmtmd chunks, freed when it ends
    started_at: float | None = None
    submitted_at: float = field(default_factory=time.perf_counter)

    @property
    def queue_s(self) -> float:
        """Seconds it waited for a sequence."""
        return (self.started_at or self.submitted_at) - self.submitted_at


def grounding_fields(turn: Turn, attribution: Attribution | None) -> dict:
    """What an answer carries about its sources, in the ``sources`` and ``done`` events and the saved message.

    Returns:
        ``{"sources", "grounding", "grounding_note", "closest", "retrieved", "signals"}``: the cited passages
        (``Source`` dicts: doc_id, name, page, section, part, start, end, quote, score, ocr), the verdict
        (``supported``, ``partial``, ``not_found``; None when no document was selected), why an answer is
        ``not_found`` (one sentence, else ""), the passage closest to the question when nothing supports the answer
        (or None), the chunks a RAG turn read (``Hit`` dicts), and the verdict's inputs (``verdict.Signals`` as a
        dict of 0..1 floats, {} when none were measured: what ``python -m backend.grounding.calibrate`` fits on).
    """
    data = attribution.to_dict() if attribution else {}
    return {"sources": data.get("sources", []), "grounding": data.get("grounding"),
            "grounding_note": data.get("note", ""), "closest": data.get("closest"),
            "retrieved": [asdict(h) for h in turn.plan.retrieved], "signals": data.get("signals") or {}}
