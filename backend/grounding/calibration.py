"""The verdict's parameters for one model: its calibration, a small JSON keyed by the model file's fingerprint.

A verdict's coefficients and thresholds belong to the model whose answers they were fitted on: a wrong answer of
SmolLM2 and one of Qwen look different to the signals (``verdict.Signals``). So each model gets its own
calibration (issue 43), stored as ``calibrations/<name>.json`` beside this module (shipped) or in a folder the app
is given (``models/calibrations``, written by ``python -m backend.grounding.calibrate``), holding:

* ``model``, ``fingerprint`` (``backend.inference.model_identity`` of the GGUF: size and its first and last 4 MiB),
  ``tuning_set``, ``date``;
* the fitted ``intercept``, ``coefficients``, ``supported_at`` and ``not_found_below`` (``verdict``);
* ``held_out``: the figures on answers to articles the fit never saw (``calibrate``: each answer judged by a fit on
  the other folds' articles): ``supported_precision`` (the share of ✓ on right answers, None where no threshold
  gave one), ``supported_coverage``, ``not_found_recall`` (⚠ on unanswerable questions), ``not_found_false_rate``
  (⚠ on answerable ones), ``answerable_accuracy``, each with ``_ci`` (Wilson 95 %) and ``_counts``, ``answers``,
  ``articles``, ``folds``.

A mark is shown only where its held-out figure allows (issue 43): ✓ *Supported* where ``supported_precision`` is
at least ``SUPPORTED_PRECISION`` (0.9), ⚠ *Not found* from the verdict model where ``not_found_false_rate`` is at
most ``NOT_FOUND_FALSE_RATE`` (0.15). A model without a calibration gets neither: ◐ and the sources only. Two ⚠
do not depend on the model and stay for every one: the answer itself says the documents do not hold it, and the
question names something the documents never name (``words.unnamed``: on all 3,065 questions of the SQuAD 2.0
tuning articles, each article whole as the document, it marked 15 of 1,512 answerable questions, 0.010, and 50
of 1,553 unanswerable ones, 0.032; ``benchmarks/citations.py --unnamed``).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "calibrations"
SUPPORTED_PRECISION = 0.9  # least held-out precision of ✓ for it to be shown (issue 43)
NOT_FOUND_FALSE_RATE = 0.15  # most held-out rate of ⚠ on answerable questions for the model's ⚠ to be shown


@dataclass(frozen=True)
class Calibration:
    """One model's verdict parameters and their held-out figures (see the module docstring).

    Attributes:
        model: the model's name, as a person reads it.
        fingerprint: ``model_identity`` of its GGUF (64 hex characters).
        tuning_set / date: what it was fitted on, and when (ISO date).
        intercept / coefficients: the logistic model over ``verdict.FEATURES``.
        supported_at / not_found_below: the probability thresholds of ✓ and ⚠ (``verdict.judge``).
        held_out: figures on articles the fit never saw (keys in the module docstring).
        source: the file it was read from ("" when built in code).
    """

    model: str
    fingerprint: str
    tuning_set: str
    date: str
    intercept: float
    coefficients: dict[str, float]
    supported_at: float
    not_found_below: float
    held_out: dict = field(default_factory=dict)
    source: str = ""

    @property
    def shows_supported(self) -> bool:
        """✓ may be shown: the held-out ✓ precision is known and at least ``SUPPORTED_PRECISION``."""
        precision = self.held_out.get("supported_precision")
        return precision is not None and precision >= SUPPORTED_PRECISION

    @property
    def shows_not_found(self) -> bool:
        """The verdict model's ⚠ may be shown: its held-out rate on answerable questions is at most
        ``NOT_FOUND_FALSE_RATE``."""
        rate = self.held_out.get("not_found_false_rate")
        return rate is not None and rate <= NOT_FOUND_FALSE_RATE

    def weighs(self, feature: str) -> bool:
        """The verdict model's probability decides a mark shown (✓ at a threshold under 1, or the verdict's ⚠ under
        one over 0) and gives ``feature`` (a ``verdict.FEATURES`` name) a weight: a signal that costs time to
        measure (the reader's yes or no) is measured only then."""
        decides = (self.shows_supported and self.supported_at < 1.0) or (self.shows_not_found and
                                                                          self.not_found_below > 0.0)
        return decides and self.coefficients.get(feature, 0.0) != 0.0

    def summary(self) -> str:
        """One line for the Model panel: what it was fitted on and which marks its held-out figures allow."""
        h = self.held_out
        tick = (f"✓ shown (held-out precision {h['supported_precision']:.2f})" if self.shows_supported else
                "✓ off (held-out precision " + (f"{h['supported_precision']:.2f}" if h.get("supported_precision")
                                                 is not None else "not reached") + f" < {SUPPORTED_PRECISION})")
        warn = (f"⚠ shown (held-out false rate {h['not_found_false_rate']:.2f})" if self.shows_not_found else
                "⚠ off (held-out false rate " + (f"{h['not_found_false_rate']:.2f}" if h.get("not_found_false_rate")
                                                  is not None else "unknown") + f" > {NOT_FOUND_FALSE_RATE})")
        return f"calibrated on {self.tuning_set} ({self.date}): {tick}; {warn}"

    def to_json(self) -> str:
        """The JSON written to a calibration file (``source`` left out)."""
        data = asdict(self)
        data.pop("source")
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def read_calibration(path: Path) -> Calibration:
    """Read one calibration file.

    Raises:
        ValueError: the file is not a calibration (bad JSON, a missing or mistyped field).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Calibration(model=str(data["model"]), fingerprint=str(data["fingerprint"]),
                           tuning_set=str(data["tuning_set"]), date=str(data["date"]),
                           intercept=float(data["intercept"]),
                           coefficients={str(k): float(v) for k, v in data["coefficients"].items()},
                           supported_at=float(data["supported_at"]), not_found_below=float(data["not_found_below"]),
                           held_out=dict(data.get("held_out", {})), source=str(path))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{Path(path).name} is not a verdict calibration ({exc}).") from exc


def calibration_for(fingerprint: str | None, folders: tuple[Path, ...] = ()) -> Calibration | None:
    """The calibration of the model with this fingerprint, from ``folders`` (first found wins) then the shipped
    ones; None when there is none (or no fingerprint). A broken file is skipped with a log line.

    Args:
        fingerprint: ``model_identity`` of the loaded GGUF.
        folders: further folders of ``*.json`` calibrations (e.g. ``models/calibrations``).
    """
    if not fingerprint:
        return None
    for folder in (*folders, SHIPPED):
        found = _by_fingerprint(Path(folder), _mtime(Path(folder))).get(fingerprint)
        if found is not None:
            return found
    return None


def _mtime(folder: Path) -> int:
    try:
        return folder.stat().st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=16)
def _by_fingerprint(folder: Path, mtime_ns: int) -> dict[str, Calibration]:
    """Every readable calibration in ``folder``, by fingerprint (read again when the folder changes)."""
    out: dict[str, Calibration] = {}
    for path in sorted(folder.glob("*.json")) if mtime_ns else []:
        try:
            found = read_calibration(path)
        except ValueError as exc:
            log.warning("%s", exc)
            continue
        out.setdefault(found.fingerprint, found)
    return out
