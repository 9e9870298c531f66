"""A long-lived part made once, when it is first needed or ahead of that by the start-up warm-up, whichever
comes first, with its state for the status line (loading, ready, failed).

The app serves its first screen before the parts that screen does not use (the embedding model, the OCR
engine) are loaded: the warm-up thread makes them one by one in the background, and a request that needs one
sooner makes it itself or waits for the thread already making it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoadError(RuntimeError):
    """A part could not be loaded; ``str(err)`` is one sentence for the user."""


class Once(Generic[T]):
    """A value made by ``make`` at most once, by whichever thread asks first; the others wait for it.

    A failure is kept: every later ``get`` raises the same ``LoadError`` (a model file that is missing at
    start stays missing until the app is restarted), and ``state`` says why.

    Args:
        make: builds the value (may take seconds: imports, model files).
        what: the part's name in sentences ("the embedding model").
    """

    def __init__(self, make: Callable[[], T], what: str):
        self.make, self.what = make, what
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: str | None = None
        self._started: float | None = None
        self.seconds: float | None = None  # how long making it took, once made

    @property
    def ready(self) -> bool:
        """True once the value is made."""
        return self.seconds is not None and self._error is None

    @property
    def state(self) -> str:
        """``waiting`` (nobody asked yet), ``loading``, ``ready (1.2 s)`` or ``failed: <why>``."""
        if self._error is not None:
            return f"failed: {self._error}"
        if self.seconds is not None:
            return f"ready ({self.seconds:.1f} s)"
        return "loading" if self._started is not None else "waiting"

    def get(self) -> T:
        """The value, made now in this thread when nobody has made it yet (waits while another thread does).

        Raises:
            LoadError: making it failed (now or earlier); one sentence naming the part and the cause.
        """
        if self.seconds is None or self._error is not None:
            with self._lock:
                if self.seconds is None:
                    self._started = time.perf_counter()
                    try:
                        self._value = self.make()
                    except Exception as exc:  # noqa: BLE001 (kept and re-raised as one sentence to every caller)
                        self._error = f"{type(exc).__name__}: {exc}".rstrip(". ")
                    self.seconds = time.perf_counter() - self._started
        if self._error is not None:
            raise LoadError(f"{self.what[0].upper()}{self.what[1:]} could not be loaded ({self._error}); "
                            "check the log and restart the app.")
        return self._value  # type: ignore[return-value]

    def replace(self, value: T) -> None:
        """Swap the made value for ``value`` (a table opened again on a new connection), for every later ``get``.

        Raises:
            LoadError: the value was never made (nothing to replace).
        """
        with self._lock:
            if not self.ready:
                raise LoadError(f"{self.what[0].upper()}{self.what[1:]} is not loaded yet.")
            self._value = value
