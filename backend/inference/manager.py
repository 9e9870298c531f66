"""Managing the loaded model: which folders a model may come from, loading one with the configured llama.cpp
settings (its vision projector attached when one fits), listing the GGUFs there, and restarting the loaded one.
A run's log file begins with each load (``RunLogs``)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from backend.config import Settings
from backend.inference.bundled import bundled_path
from backend.inference.engine import Engine
from backend.inference.loader import LoadParams
from backend.inference.projectors import find_projector
from backend.inference.registry import ModelInfo, list_models
from backend.inference.run_logs import RunLogs
from backend.inference.types import EngineError, NoModelLoaded

log = logging.getLogger(__name__)


class ModelManager:
    """Loads, lists and restarts models for the app.

    Args:
        settings: the configuration (model folders, llama.cpp settings).
        engine: the llama.cpp model owner.
        run_logs: one log file per model run.
        reset_caches: called with the loaded model's path by ``restart(reset=True)``; deletes that model's KV caches
            (and session snapshots) and returns how many disk entries went.
    """

    def __init__(self, settings: Settings, engine: Engine, run_logs: RunLogs,
                 reset_caches: Callable[[Path], int] = lambda path: 0):
        self.settings, self.engine, self.run_logs, self.reset_caches = settings, engine, run_logs, reset_caches
        self.error: str | None = None  # why the start-up model did not load, if it did not

    def dirs(self) -> list[Path]:
        """The folders a model may be loaded from: ``models_dir``, the bundled model's, ``extra_model_dirs``."""
        s = self.settings
        return [s.models_dir, bundled_path(s.models_dir).parent, *s.extra_model_dirs]

    def allowed(self, path: Path) -> Path:
        """Check that a file to load lies in the model folders (or is the configured ``model_path``).

        Args:
            path: the requested GGUF file, as given by a user.

        Returns:
            The resolved path.

        Raises:
            EngineError: it lies elsewhere; no path outside the model folders is ever opened on request.
        """
        resolved = Path(path).expanduser().resolve()
        configured = self.settings.model_path
        if configured is not None and resolved == Path(configured).expanduser().resolve():
            return resolved
        if any(resolved.is_relative_to(d.expanduser().resolve()) for d in self.dirs()):
            return resolved
        raise EngineError(f"Models load only from the model folders ({', '.join(str(d) for d in self.dirs())}); "
                          "put the file there or add its folder to KVC_EXTRA_MODEL_DIRS.")

    def params(self) -> LoadParams:
        """llama.cpp settings from the configuration."""
        s = self.settings
        return LoadParams(n_ctx=s.n_ctx, n_gpu_layers=s.n_gpu_layers, n_batch=s.n_batch, n_ubatch=s.n_ubatch,
                          n_threads=s.n_threads, n_threads_batch=s.n_threads_batch, flash_attn=s.flash_attn,
                          type_k=s.type_k, type_v=s.type_v, use_mmap=s.use_mmap, use_mlock=s.use_mlock,
                          use_extra_bufts=s.use_extra_bufts, n_seq_max=s.n_seq_max)

    def load(self, path: Path, attach: bool = True, **overrides) -> None:
        """Load a model with the configured settings.

        Args:
            path: the GGUF file; it must lie in the model folders or be ``model_path`` (``allowed``).
            attach: attach its vision projector now (``attach_projector``); at start-up the warm-up does it.
            overrides: ``LoadParams`` fields to change for this load (e.g. ``type_k="q8_0"``).

        Raises:
            EngineError: a path outside the model folders, or see ``Engine.load``.
        """
        path = self.allowed(path)
        self.run_logs.start(path.name)
        self.engine.load(path, dataclasses.replace(self.params(), **overrides))  # preflight outside the lock
        if attach:
            self.attach_projector()
        self.error = None

    def load_at_start(self, path: Path, attach: bool) -> None:
        """``load`` the start-up model; a failure is kept in ``error`` (and logged), never raised."""
        try:
            self.load(path, attach=attach)
        except EngineError as exc:
            self.error = str(exc)
            log.warning("start-up model not loaded: %s", exc)

    def attach_projector(self) -> None:
        """Attach the loaded model's vision projector when its folder holds one that fits (``find_projector``) and
        the preflight's probe image passed; one that failed there, or that libmtmd refuses here, is logged and the
        model answers text only."""
        if not self.engine.loaded or self.engine.projector is not None:
            return
        projector = find_projector(self.engine.model_path)
        if projector is None:
            return
        checked = self.engine.last_preflight
        if checked is not None and not checked.vision:  # it crashed or was refused in the preflight's child
            log.warning("vision projector %s not attached: %s", projector.name, checked.message)
            return
        try:
            self.engine.attach_projector(projector)
        except EngineError as exc:
            log.warning("vision projector %s not attached: %s", projector.name, exc)

    def list(self) -> list[ModelInfo]:
        """The GGUF files in the model folders, described from their headers."""
        return list_models(self.dirs())

    def restart(self, reset: bool) -> int:
        """Close and reopen the loaded model with the same settings (the original ``up/without_reset`` and
        ``up/reset``).

        Args:
            reset: also delete this model's KV caches and session snapshots (``reset_caches``), so every prefix is
                computed again. Without it the caches stay and the next answer reuses them.

        Returns:
            How many disk cache entries were deleted (0 without reset).

        Raises:
            NoModelLoaded: nothing to restart.
            EngineError: the reopen failed.
        """
        with self.engine.lock:
            if not self.engine.loaded:
                raise NoModelLoaded()
            path, params = self.engine.model_path, self.engine.params
            cleared = self.reset_caches(path) if reset else 0
            self.run_logs.start(path.name)
            self.engine.load(path, params)
            self.attach_projector()
        log.info("restarted %s (reset=%s, %d cache entries cleared)", path.name, reset, cleared)
        return cleared
