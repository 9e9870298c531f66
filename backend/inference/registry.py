"""Where models come from: GGUF files in ``models/`` (or a given path), or Hugging Face downloads."""

from __future__ import annotations

import functools
import hashlib
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from backend.inference.gguf_header import GgufHeader, read_header
from backend.inference.projectors import find_projector, is_projector
from backend.storage.disk import size_text

log = logging.getLogger(__name__)

HOW_TO_GET_A_MODEL = ("No model is loaded: put a .gguf chat model in the models/ folder, start with "
                      "--model PATH, or download one in the Model panel.")


class ModelDownloadError(RuntimeError):
    """A download failed; ``str(err)`` is one sentence for the user."""


@dataclass(frozen=True)
class ModelInfo:
    """A GGUF file as its header describes it, read without loading the model.

    Attributes:
        path: the file.
        size_bytes: file size, bytes.
        architecture: ``general.architecture`` (``llama``, ``qwen3``...); "" when unreadable.
        parameters: total tensor elements (the parameter count).
        quantization: the file type (``Q8_0``, ``F16``...), else the most common tensor type.
        context_length: ``<arch>.context_length``, tokens (0 when absent).
        has_chat_template: whether ``tokenizer.chat_template`` is present (needed to chat).
        error: why the file cannot be used, one sentence; "" when it can.
        projector: the vision projector (``mmproj``) that goes with it (``projectors.find_projector``), or None:
            with one, the model can see images.
    """

    path: Path
    size_bytes: int
    architecture: str = ""
    parameters: int = 0
    quantization: str = ""
    context_length: int = 0
    has_chat_template: bool = False
    error: str = ""
    projector: Path | None = None


def describe(path: Path) -> ModelInfo:
    """Read a GGUF file's metadata from its header (``gguf_header``: no weights loaded, no llama.cpp).

    Args:
        path: the file.

    Returns:
        Its ``ModelInfo``; a file that is not a readable GGUF (wrong magic, truncated) gets
        ``error`` set instead of raising.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        header = read_header(path)
        arch = header.architecture
        if not arch:
            raise KeyError("general.architecture")
        ctx = header.arch_field("context_length")
        parameters = sum(t.n_elements for t in header.tensors)
        quantization = _quantization(header)
        if header.data_end() > size:
            raise ValueError(f"the tensors need {header.data_end()} bytes and the file has {size}")
    except (ValueError, KeyError, OSError) as exc:
        log.info("not a readable GGUF: %s (%s)", path, exc)
        return ModelInfo(path, size, error="It is not a readable GGUF file (wrong format or truncated); "
                                           "download it again.")
    template = "tokenizer.chat_template" in header.fields
    return ModelInfo(path, size, arch, parameters, quantization, int(ctx) if isinstance(ctx, int) else 0, template,
                     "" if template else "It has no chat template; use an instruct/chat GGUF.", find_projector(path))


def _quantization(header: GgufHeader) -> str:
    """``general.file_type`` as a name (``MOSTLY_Q8_0`` -> ``Q8_0``), else the dominant tensor type."""
    import gguf

    file_type = header.fields.get("general.file_type")
    if isinstance(file_type, int):
        try:
            return gguf.LlamaFileType(file_type).name.split("_", 1)[1]
        except ValueError:
            pass
    weights: Counter = Counter()
    for t in header.tensors:
        try:
            weights[gguf.GGMLQuantizationType(t.type).name] += t.n_elements
        except ValueError:
            weights[f"type {t.type}"] += t.n_elements
    return weights.most_common(1)[0][0] if weights else ""


def model_identity(path: Path, sample_bytes: int = 4 << 20) -> str:
    """Identify a model file without hashing all of it (memoized per path, size and mtime).

    Args:
        path: the GGUF file.
        sample_bytes: bytes hashed from each end of the file.

    Returns:
        Hex SHA-256 over the file size, the first and the last ``sample_bytes`` bytes
        (the GGUF header, metadata and tokenizer live at the start).
    """
    stat = path.stat()
    return _identity(str(path), stat.st_size, stat.st_mtime_ns, sample_bytes)


@functools.lru_cache(maxsize=32)
def _identity(path: str, size: int, mtime_ns: int, sample_bytes: int) -> str:
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(sample_bytes))
        if size > sample_bytes:
            f.seek(max(size - sample_bytes, sample_bytes))
            h.update(f.read(sample_bytes))
    return h.hexdigest()


def list_models(folders: list[Path]) -> list[ModelInfo]:
    """Every ``*.gguf`` in these folders, described (unreadable files included, with their error).

    Args:
        folders: ``models_dir`` plus any extra model folders; missing folders are skipped.

    Returns:
        One ``ModelInfo`` per file, by folder order then name; a path listed twice appears once.
    """
    seen, out = set(), []
    for folder in folders:
        for path in list_local(folder):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                out.append(describe(path))
    return out


def list_local(models_dir: Path) -> list[Path]:
    """GGUF models directly inside ``models_dir``, sorted by name (``*.tmp`` partials and vision projectors,
    ``mmproj*.gguf``, which load with their model, excluded)."""
    folder = Path(models_dir)
    return sorted(p for p in folder.glob("*.gguf") if p.is_file() and not is_projector(p)) if folder.is_dir() else []


def pick_model(model_path: Path | None, models_dir: Path, preferred_name: str,
               fallback: Path | None = None) -> Path | None:
    """Choose the model to load at start.

    Args:
        model_path: an explicit path (``--model``); returned as is when given.
        models_dir: folder to search otherwise.
        preferred_name: file name preferred among several (the default model's).
        fallback: used when ``models_dir`` holds no GGUF and this file exists (the bundled model).

    Returns:
        A path, or None when there is no model.
    """
    if model_path is not None:
        return Path(model_path)
    found = list_local(models_dir)
    for path in found:
        if path.name == preferred_name:
            return path
    if found:
        return found[0]
    return Path(fallback) if fallback is not None and Path(fallback).is_file() else None


def expectation(parameters: int) -> str:
    """How good to expect answers to be from a model of this size, one sentence (a rough guide from
    running SmolLM2-135M and the Qwen3 family on document questions here; ``benchmarks/answers.py``).

    Args:
        parameters: parameter count.
    """
    if parameters <= 0:
        return ""
    if parameters < 300e6:
        return ("Tiny model: it copies short facts out of a document, but often misses or invents them; "
                "download Qwen3-0.6B or larger for real use.")
    if parameters < 1e9:
        return "Small model: good at short factual questions about a document, weak at reasoning across it."
    if parameters < 4e9:
        return "Mid-size model: answers most document questions well; slower on a CPU."
    return "Large model: the best answers here, and the slowest on a CPU."


@dataclass(frozen=True)
class RecommendedModel:
    """A small instruct GGUF that runs on a laptop CPU (sizes are approximate).

    Attributes:
        repo_id / filename: where it is on the hub.
        about: one line for the Model panel.
        projector: for a vision model, its ``mmproj`` file in the same repository ("" for text-only models);
            downloaded beside it, so loading pairs them (``projectors.find_projector``).
    """

    repo_id: str
    filename: str
    about: str
    projector: str = ""


RECOMMENDED_MODELS = (
    RecommendedModel("Qwen/Qwen3-0.6B-GGUF", "Qwen3-0.6B-Q8_0.gguf",
                     "Qwen3 0.6B Q8_0, about 640 MB: the default, fast on any CPU; /think and /no_think"),
    RecommendedModel("Qwen/Qwen3-1.7B-GGUF", "Qwen3-1.7B-Q8_0.gguf",
                     "Qwen3 1.7B Q8_0, about 1.8 GB: better answers, still fine on a laptop CPU"),
    RecommendedModel("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
                     "Llama 3.2 1B Instruct Q4_K_M, about 0.8 GB"),
    RecommendedModel("unsloth/gemma-3-1b-it-GGUF", "gemma-3-1b-it-Q4_K_M.gguf", "Gemma 3 1B IT Q4_K_M, about 0.8 GB"),
    RecommendedModel("ggml-org/SmolVLM2-256M-Video-Instruct-GGUF", "SmolVLM2-256M-Video-Instruct-Q8_0.gguf",
                     "SmolVLM2 256M Q8_0 with its image projector, about 0.3 GB together: sees images (screenshots, "
                     "photos of pages); its shapes are the ones benchmarks/images.py times",
                     "mmproj-SmolVLM2-256M-Video-Instruct-Q8_0.gguf"),
)

# Room left on the disk after a download, bytes: the KV caches and uploads need space too.
DISK_HEADROOM_BYTES = 256 << 20

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


def _reporting_tqdm(progress: Progress):
    """A tqdm class that also reports bytes done and total to ``progress`` (counted here, so it
    works when huggingface_hub disables the visible bar)."""
    from tqdm.auto import tqdm

    class Reporter(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)

        def update(self, n=1):
            self.done += int(n or 0)
            if self.total:
                progress(self.done, int(self.total))
            return super().update(n)

    return Reporter


def resolve_filename(repo_id: str, name_or_pattern: str, endpoint: str | None = None) -> str:
    """A file name as given (``*.gguf``), or the one GGUF in the repo whose name contains the pattern
    (a quant such as ``Q4_K_M``, case-insensitive).

    Raises:
        ModelDownloadError: no file or several files match.
        huggingface_hub errors: the repo listing failed (``download`` turns them into one sentence).
    """
    if name_or_pattern.lower().endswith(".gguf"):
        return name_or_pattern
    from huggingface_hub import HfApi

    files = [f for f in HfApi(endpoint=endpoint).list_repo_files(repo_id)
             if f.lower().endswith(".gguf") and name_or_pattern.lower() in f.lower()]
    if len(files) != 1:
        found = ", ".join(sorted(files)[:6]) or "none"
        raise ModelDownloadError(f"'{name_or_pattern}' must match exactly one .gguf file in {repo_id} "
                                 f"(matches: {found}); give the full file name.")
    return files[0]


def _probe(endpoint: str | None, local: Path) -> None:
    """Fail at once when the hub cannot be reached (huggingface_hub would retry with backoff for
    about 20 s first). Skipped in offline mode, where huggingface_hub fails fast itself, and when
    the file is already there (huggingface_hub then returns it without the network).

    Raises:
        httpx.TransportError: no connection within 3 s.
    """
    import huggingface_hub.constants as hc

    if hc.HF_HUB_OFFLINE or local.exists():
        return
    httpx.head(endpoint or hc.ENDPOINT, timeout=3.0)  # any HTTP answer, even an error status, will do


def download(repo_id: str, filename: str, models_dir: Path, progress: Progress | None = None,
             endpoint: str | None = None) -> Path:
    """Download one GGUF of a Hugging Face repo into ``models_dir`` with ``huggingface_hub``.

    The file's size is read first (``hf_hub_download(dry_run=True)``) and the download refused
    when it would not leave ``DISK_HEADROOM_BYTES`` free. An interrupted transfer resumes
    (huggingface_hub keeps the partial file and asks for the rest with an HTTP Range request,
    within a call and on the next call). ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are honoured; an
    unreachable hub fails within seconds (``_probe``).

    Args:
        repo_id: e.g. ``Qwen/Qwen3-0.6B-GGUF``.
        filename: e.g. ``Qwen3-0.6B-Q8_0.gguf``, or a quant pattern such as ``Q8_0``.
        models_dir: destination folder.
        progress: called with (bytes done, bytes total) as the file arrives.
        endpoint: the hub's base URL (default: ``HF_ENDPOINT``, else huggingface.co).

    Returns:
        The local path of the file.

    Raises:
        ModelDownloadError: offline, unknown repo/file, not enough disk space, or the transfer failed.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    missing = f"Hugging Face has no file {filename} in {repo_id}; check the repo and file name."
    unreachable = (f"Could not download {filename} from Hugging Face (offline or unreachable); connect to the "
                   "internet, or put a .gguf file in models/ and restart.")
    try:
        _probe(endpoint, models_dir / filename)
        filename = resolve_filename(repo_id, filename, endpoint)
        plan = hf_hub_download(repo_id=repo_id, filename=filename, local_dir=models_dir, endpoint=endpoint,
                               dry_run=True)
        free = shutil.disk_usage(models_dir).free
        if plan.will_download and plan.file_size and plan.file_size + DISK_HEADROOM_BYTES > free:
            raise ModelDownloadError(f"{filename} needs {size_text(plan.file_size)} but only "
                                     f"{size_text(free)} is free in {models_dir}; free some space first.")
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, local_dir=models_dir, endpoint=endpoint,
                                    tqdm_class=_reporting_tqdm(progress) if progress else None))
    # Order matters: the offline LocalEntryNotFoundError is an EntryNotFoundError too.
    except ModelDownloadError:
        raise
    except LocalEntryNotFoundError as exc:
        raise ModelDownloadError(unreachable) from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise ModelDownloadError(missing) from exc
    except Exception as exc:  # HfHubHTTPError, OSError, and the HTTP client's transport errors after retries
        log.info("download of %s/%s failed: %s", repo_id, filename, exc)
        raise ModelDownloadError(unreachable) from exc
