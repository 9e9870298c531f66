"""Uploads that carry many documents at once: a zip archive is opened into its member files (Python's
``zipfile``), so a folder of manuals arrives as one upload; plain files pass through as they are.

An archive is untrusted input: members are read in slices and stopped past the size limit (a zip bomb
inflates kilobytes into gigabytes), only member base names are used (no ``../`` path escapes the work
folder), folders, macOS resource forks (``__MACOSX/``) and hidden files are left out, and a member that is
not a supported document, too large, encrypted or corrupt is named in ``skipped`` with one sentence while
the others go on.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from backend.documents.kinds import EXTENSIONS
from backend.storage.disk import size_text

SUPPORTED = tuple(EXTENSIONS)  # what an upload takes: documents and images
READ_SLICE = 1 << 20  # bytes read from a member at a time
MAX_MEMBERS = 5_000  # members looked at per archive


@dataclass
class Bundle:
    """What an upload of one or more files holds.

    Attributes:
        files: ``(path on disk, document name)`` for each document to upload, in the order given
            (an archive's members in archive order).
        skipped: one sentence per file or member that will not be uploaded, naming it and saying why.
    """

    files: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def is_archive(path: Path) -> bool:
    """True for a file named ``*.zip`` (its contents are checked when it is opened)."""
    return path.suffix.lower() == ".zip"


def expand(paths: list[tuple[Path, str]], workdir: Path, max_member_bytes: int) -> Bundle:
    """Open every zip archive among ``paths`` into ``workdir``; other files pass through.

    Args:
        paths: ``(path on disk, name the user gave it)`` per uploaded file.
        workdir: an empty folder for the archives' members (the caller deletes it afterwards).
        max_member_bytes: the upload size limit, applied to each member as it is read, bytes.

    Returns:
        The files to upload and the members skipped (a plain file is never skipped here: its checks
        are the upload's own).
    """
    bundle = Bundle()
    for n, (path, name) in enumerate(paths):
        if not is_archive(Path(name)):
            bundle.files.append((Path(path), name))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                _members(archive, name, workdir / str(n), max_member_bytes, bundle)
        except (zipfile.BadZipFile, OSError, EOFError):
            bundle.skipped.append(f"{name} could not be opened as a zip archive (it is damaged or not a zip); "
                                  "upload its files one by one.")
    return bundle


def _members(archive: zipfile.ZipFile, name: str, folder: Path, max_bytes: int, bundle: Bundle) -> None:
    """Extract the supported members of one archive into ``folder`` (see ``expand``)."""
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > MAX_MEMBERS:
        bundle.skipped.append(f"{name} holds {len(infos):,} files; only the first {MAX_MEMBERS:,} were looked at.")
    for k, info in enumerate(infos[:MAX_MEMBERS]):
        member = PurePosixPath(info.filename.replace("\\", "/"))
        label = f"{name} › {info.filename}"
        if member.parts[0] == "__MACOSX" or member.name.startswith("."):
            continue
        if member.suffix.lower() not in SUPPORTED:
            bundle.skipped.append(f"{label} was skipped: it is not a PDF, DOCX, TXT, Markdown or image file.")
            continue
        if info.flag_bits & 0x1:
            bundle.skipped.append(f"{label} was skipped: it is encrypted in the archive; unzip it and upload it.")
            continue
        target = folder / str(k) / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not _copy_capped(archive, info, target, max_bytes):
                target.unlink(missing_ok=True)
                bundle.skipped.append(f"{label} was skipped: it is larger than the {size_text(max_bytes)} "
                                      "upload limit.")
                continue
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            target.unlink(missing_ok=True)
            bundle.skipped.append(f"{label} was skipped: it could not be read from the archive ({exc}).")
            continue
        bundle.files.append((target, member.name))


def _copy_capped(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, max_bytes: int) -> bool:
    """Write one member to ``target`` in ``READ_SLICE`` slices; False as soon as it passes ``max_bytes``.
    Raises what ``zipfile`` raises on a damaged member."""
    written = 0
    with archive.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(READ_SLICE):
            written += len(chunk)
            if written > max_bytes:
                return False
            out.write(chunk)
    return True
