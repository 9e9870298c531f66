"""Uploading many files (or zip archives of them) in one go, shared by the Documents panel and the API:
each document in turn, one progress line for all of them, and a result per file, so one broken file
never stops the others."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from backend.documents import expand
from backend.services import Services
from components.common import USER_ERRORS, check_upload, owner_of
from components.upload_copies import discard_temp_copies


@dataclass
class UploadResult:
    """What one bulk upload did.

    Attributes:
        done: one dict per file: ``name``, and ``doc_id``, ``pages``, ``chunks``, ``created``, ``cached``
            (``cache_documents``'s result, or None) on success, or ``error`` (one sentence).
        skipped: sentences for archive members that were not uploaded (see ``backend.documents.bundle``).
    """

    done: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def new_ids(self) -> list[str]:
        """Documents uploaded (or found already uploaded), in order."""
        return [d["doc_id"] for d in self.done if "doc_id" in d]

    @property
    def failed(self) -> list[str]:
        """One sentence per file that did not upload (failed uploads, then skipped members)."""
        return [d["error"] for d in self.done if "error" in d] + self.skipped

    def summary(self) -> str:
        """One line: how many uploaded, were already there, failed."""
        new = sum(1 for d in self.done if d.get("created"))
        again = sum(1 for d in self.done if "doc_id" in d and not d["created"])
        parts = [f"{new} uploaded"] + ([f"{again} already there"] if again else [])
        parts += [f"{len(self.failed)} not uploaded"] if self.failed else []
        pages, chunks = sum(d.get("pages", 0) for d in self.done), sum(d.get("chunks", 0) for d in self.done)
        return ", ".join(parts) + f" ({pages:,} page{'s' * (pages != 1)}, {chunks:,} chunk{'s' * (chunks != 1)})"


def upload_many(services: Services, request: gr.Request | None, paths: list[tuple[Path, str]], password: str | None,
                cache: bool, progress: Callable[[float, str], None] | None = None, figures: bool = False) -> UploadResult:
    """Upload files, opening zip archives into their documents, one after the other.

    Args:
        services: the app's services.
        request: the Gradio request (owner and quotas).
        paths: ``(path on disk, name)`` per uploaded file.
        password: for encrypted PDFs (tried on each PDF), or None.
        cache: prime each new document's KV cache when a model is loaded.
        progress: called with ``(fraction 0..1, "file 3 of 40 · name: step")``.
        figures: have the loaded vision model describe PDF pages that are mostly figures.

    Returns:
        The result per file; nothing raised for a bad file (its sentence is in ``done``).
    """
    owner, result = owner_of(request), UploadResult()
    try:
        return _upload_each(services, request, owner, result, paths, password, cache, progress, figures)
    finally:
        discard_temp_copies([p for p, _ in paths], services.settings.purge_delay_s)


def _upload_each(services: Services, request: gr.Request | None, owner: str, result: UploadResult,
                 paths: list[tuple[Path, str]], password: str | None, cache: bool,
                 progress: Callable[[float, str], None] | None, figures: bool) -> UploadResult:
    """``upload_many``'s work, file by file (archives expanded into a temporary folder, removed after)."""
    with tempfile.TemporaryDirectory(prefix="kvc-bundle-") as work:
        bundle = expand(paths, Path(work), services.settings.max_upload_bytes)
        result.skipped = bundle.skipped
        total = len(bundle.files)
        for i, (path, name) in enumerate(bundle.files):
            def step(fraction: float, desc: str, i=i, name=name) -> None:
                if progress:
                    progress((i + fraction) / max(total, 1), f"file {i + 1} of {total} · {name}: {desc}")

            try:
                check_upload(services, request, path)
                row, created = services.documents.upload(owner, path, name, password, step, figures)
            except USER_ERRORS as exc:
                result.done.append({"name": name, "error": str(exc)})
                continue
            entry = {"name": row.name, "doc_id": row.doc_id, "pages": row.pages, "ocr_pages": row.ocr_pages,
                     "chunks": row.n_chunks, "created": created, "cached": None}
            result.done.append(entry)
            if cache:
                step(0.99, "reading it into the KV cache")
                try:
                    entry["cached"] = services.primer.cache_if_possible(
                        owner, row.doc_id, lambda done, n, s=step: s(0.99, f"caching chunk {done} of {n}"))
                except USER_ERRORS as exc:
                    entry["cache_error"] = str(exc)
    return result
