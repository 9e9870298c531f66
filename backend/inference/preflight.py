"""Preflight: a model file is opened and run in a child process before the app loads it, so a native
fault in llama.cpp (a segfault, an abort) ends the child and the app answers with one sentence.

The child (``backend.inference.probe``) opens the file with the requested settings exactly as the
engine does, renders a chat through the model's template, tokenizes it, prefills it in one batch
and decodes a few tokens. When it dies with llama.cpp's extra CPU buffer types on
(``use_extra_bufts``: AMX and repacked weight layouts; SmolLM2 Q4_1 segfaults in
``ggml_backend_amx_mul_mat`` on AMX-INT8 CPUs), it is tried once more with them off, and the
setting that works is used. A model with a vision projector beside it (``find_projector``) also has the
projector loaded and a probe image encoded; when that fails (a crash or libmtmd's refusal) the model is
loaded for text only and says why. Results are remembered per model (and projector) file identity, llama.cpp build and
the settings that change the compute path, in the process and (with a folder) on disk, so a file
costs one preflight per build. The child's output (llama.cpp's log, ``faulthandler``'s stack, ggml's
backtrace) goes to the model's run log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import llama_cpp

from backend.inference.loader import LoadParams
from backend.inference.projectors import VISION_STAGES, find_projector
from backend.inference.registry import model_identity
from backend.storage.disk import write_atomically

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the ``backend`` package
FORMAT_VERSION = 2  # 2: results cover the vision projector


@dataclass(frozen=True)
class PreflightResult:
    """What the preflight found.

    Attributes:
        crashed: llama.cpp died (or hung) with every setting tried; the file must not be loaded.
        use_extra_bufts: the ``use_extra_bufts`` setting to load with (False when only that worked).
        message: one sentence for the user: why the file was refused, or what was changed; "" when
            the requested settings simply worked.
        seconds: wall time of the child runs, seconds (0.0 when remembered).
        remembered: the result came from an earlier preflight of the same file, build and settings.
        vision: for a model with a projector beside it (``find_projector``), whether the projector loaded
            and encoded a probe image; when not, the model serves text only and ``message`` says why.
    """

    crashed: bool
    use_extra_bufts: bool
    message: str = ""
    seconds: float = 0.0
    remembered: bool = False
    vision: bool = True


@dataclass(frozen=True)
class _Run:
    """One child run: how it ended, the stage it was in, and its output."""

    crashed: bool
    timed_out: bool
    how: str  # "exit 0", "SIGSEGV", "timeout after 300 s", ...
    stage: str
    output: str


def build_id() -> str:
    """llama-cpp-python's version and llama.cpp's compiled features: a crash found under one build
    says nothing about another."""
    return f"{llama_cpp.__version__} {llama_cpp.llama_print_system_info().decode(errors='replace').strip()}"


class Preflight:
    """Runs and remembers preflights.

    Args:
        folder: where results are kept across restarts (``data_dir/preflight``); None keeps them in
            memory only.
        timeout_s: longest a child run may take, seconds; a child still running then counts as a crash
            (a hang in llama.cpp would freeze the app the same way).
    """

    def __init__(self, folder: Path | None = None, timeout_s: float = 300.0):
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s

    # One memo and one lock for the process: a result holds for any Preflight with the same key.
    _memo: ClassVar[dict[str, PreflightResult]] = {}
    _lock = threading.Lock()

    def _key(self, path: Path, params: LoadParams) -> str:
        """What a result depends on: the file, the build, and the settings that change the compute path."""
        projector = find_projector(path)
        blob = json.dumps({"format": FORMAT_VERSION, "model": model_identity(path), "build": build_id(),
                           "projector": model_identity(projector) if projector else None,
                           "n_gpu_layers": params.n_gpu_layers, "flash_attn": params.flash_attn,
                           "type_k": params.type_k, "type_v": params.type_v,
                           "use_extra_bufts": params.use_extra_bufts}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def check(self, path: Path, params: LoadParams) -> PreflightResult:
        """Preflight ``path`` under ``params`` (remembered results are returned at once).

        Args:
            path: the GGUF file (already through ``loader.precheck``).
            params: the settings the engine will load it with.

        Returns:
            The result; ``crashed`` False means the engine may load the file in-process with
            ``use_extra_bufts`` as returned (an ordinary load error is left for that load to report).
        """
        path = Path(path)
        key = self._key(path, params)
        with self._lock:
            known = self._memo.get(key) or self._read(key)
            if known is not None:
                self._memo[key] = known
                return dataclasses.replace(known, remembered=True, seconds=0.0)
            result, runs = self._run_all(path, params)
            self._memo[key] = result
            if not any(run.timed_out for run in runs):  # a hang may be a slow load, not the file: ask again
                self._write(key, path, result)
            return result

    def _run_all(self, path: Path, params: LoadParams) -> tuple[PreflightResult, list[_Run]]:
        """The result, and the child runs it took (one, or two when the first crashed with extra buffer types)."""
        start = time.perf_counter()
        projector = find_projector(path)
        first = self._run(path, params, projector)
        if first.stage in VISION_STAGES and (first.crashed or first.how == "exit 4"):  # the text stages passed
            log.error("preflight: the projector %s of %s failed (%s) while %s", projector.name, path.name, first.how,
                      first.stage)
            return PreflightResult(False, params.use_extra_bufts, (
                f"Its image projector {projector.name} failed while {first.stage} ({first.how}), so {path.name} "
                "was loaded for text only; replace the mmproj file with the one made for this model."),
                time.perf_counter() - start, vision=False), [first]
        if not first.crashed:
            return PreflightResult(False, params.use_extra_bufts, seconds=time.perf_counter() - start), [first]
        log.error("preflight: %s crashed llama.cpp (%s) while %s", path.name, first.how, first.stage)
        if params.use_extra_bufts:
            second = self._run(path, dataclasses.replace(params, use_extra_bufts=False), projector)
            if not second.crashed:
                log.warning("preflight: %s runs with use_extra_bufts=False", path.name)
                return PreflightResult(False, False, (
                    f"Model {path.name} crashed llama.cpp with its extra CPU buffer types (AMX or repacked "
                    f"weights; {first.how} while {first.stage}), so it was loaded with use_extra_bufts off."),
                    time.perf_counter() - start), [first, second]
            log.error("preflight: %s also crashed with use_extra_bufts=False (%s) while %s",
                      path.name, second.how, second.stage)
        runs = [first, second] if params.use_extra_bufts else [first]
        return PreflightResult(True, params.use_extra_bufts, (
            f"This model crashed llama.cpp while {first.stage} ({first.how}), so it was not loaded and the "
            f"app keeps serving; try another file or quantization of it (an F16 or Q8_0 copy), n_gpu_layers 0, "
            f"or another llama-cpp-python build."), time.perf_counter() - start), runs

    def _run(self, path: Path, params: LoadParams, projector: Path | None = None) -> _Run:
        """One child run (with the vision projector's stages when ``projector`` is given); its output goes to
        the run log."""
        args = {**dataclasses.asdict(params), "path": str(path), "projector": str(projector) if projector else None}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
            try:
                proc = subprocess.run([sys.executable, "-m", "backend.inference.probe", json.dumps(args)],
                                      stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                      timeout=self.timeout_s, check=False)
                rc, timed_out = proc.returncode, False
            except subprocess.TimeoutExpired:
                rc, timed_out = None, True
            out.seek(0)
            output = out.read()
        stages = [line[len("stage: "):] for line in output.splitlines() if line.startswith("stage: ")]
        stage = stages[-1] if stages else "starting"
        if timed_out:
            how, crashed = f"no answer after {self.timeout_s:.0f} s", True
        elif rc < 0:
            how, crashed = signal.Signals(-rc).name, True
        else:
            how, crashed = f"exit {rc}", False
        level = logging.ERROR if crashed else logging.DEBUG
        log.log(level, "preflight child of %s (%s):\n%s", path.name, how, output[-20000:].rstrip())
        return _Run(crashed, timed_out, how, stage, output)

    def _read(self, key: str) -> PreflightResult | None:
        if self.folder is None:
            return None
        try:
            data = json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))
            return PreflightResult(bool(data["crashed"]), bool(data["use_extra_bufts"]), str(data["message"]),
                                   vision=bool(data.get("vision", True)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, key: str, path: Path, result: PreflightResult) -> None:
        if self.folder is None:
            return
        data = {"crashed": result.crashed, "use_extra_bufts": result.use_extra_bufts, "message": result.message,
                "vision": result.vision,
                "model": path.name, "checked_at": time.time(), "seconds": round(result.seconds, 3)}
        write_atomically(self.folder / f"{key}.json", json.dumps(data).encode())
