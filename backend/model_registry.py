"""Where models come from: GGUF files in ``models/`` (or a given path), or Hugging Face downloads."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

HOW_TO_GET_A_MODEL = ("No model is loaded: put a .gguf chat model in the models/ folder, start with "
                      "--model PATH, or download one in the Model panel.")


class ModelDownloadError(RuntimeError):
    """A download failed; ``str(err)`` is one sentence for the user."""


def list_local(models_dir: Path) -> list[Path]:
    """GGUF files directly inside ``models_dir``, sorted by name (``*.tmp`` partials excluded)."""
    folder = Path(models_dir)
    return sorted(p for p in folder.glob("*.gguf") if p.is_file()) if folder.is_dir() else []


def pick_model(model_path: Path | None, models_dir: Path, preferred_name: str) -> Path | None:
    """Choose the model to load at start.

    Args:
        model_path: an explicit path (``--model``); returned as is when given.
        models_dir: folder to search otherwise.
        preferred_name: file name preferred among several (the default model's).

    Returns:
        A path, or None when there is no model.
    """
    if model_path is not None:
        return Path(model_path)
    found = list_local(models_dir)
    for path in found:
        if path.name == preferred_name:
            return path
    return found[0] if found else None


def download(repo_id: str, filename: str, models_dir: Path) -> Path:
    """Download one file of a Hugging Face repo into ``models_dir`` with ``huggingface_hub``.

    Progress is reported through huggingface_hub's tqdm bars (the console at start-up,
    ``gr.Progress(track_tqdm=True)`` in the UI). An interrupted transfer resumes.
    ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are honoured.

    Args:
        repo_id: e.g. ``Qwen/Qwen3-0.6B-GGUF``.
        filename: e.g. ``Qwen3-0.6B-Q8_0.gguf``.
        models_dir: destination folder.

    Returns:
        The local path of the file.

    Raises:
        ModelDownloadError: offline, unknown repo/file, or the transfer failed.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    missing = f"Hugging Face has no file {filename} in {repo_id}; check the repo and file name."
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, local_dir=models_dir))
    # Order matters: RepositoryNotFoundError is an HfHubHTTPError, LocalEntryNotFoundError (offline) an OSError
    # and an EntryNotFoundError.
    except RepositoryNotFoundError as exc:
        raise ModelDownloadError(missing) from exc
    except (HfHubHTTPError, OSError) as exc:
        log.info("download of %s/%s failed: %s", repo_id, filename, exc)
        raise ModelDownloadError(f"Could not download {filename} from Hugging Face (offline or unreachable); "
                                 "connect to the internet, or put a .gguf file in models/ and restart.") from exc
    except EntryNotFoundError as exc:
        raise ModelDownloadError(missing) from exc
