"""What the fuzz tests and ``benchmarks/fuzz.py`` throw at the app: real files from ``../shared/testdata``
mutated (bytes flipped, cut short, garbage spliced in, named with another extension, packed in a zip) and random
bytes under every accepted extension; and any JSON value for an endpoint's arguments. Plus the property every
upload must hold: the file is stored, or refused with one sentence naming it, and nothing else happens.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

from hypothesis import strategies as st

from backend.documents import DocumentError, DocumentService, expand

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT.parent / "shared" / "testdata"
SEEDS = [  # small real files of every kind the app reads (the mutations keep most of them small)
    TESTDATA / "pdf" / "pypdf_toy.pdf",
    TESTDATA / "pdf" / "pypdf_crazyones.pdf",
    TESTDATA / "pdf" / "pdfjs_helloworld-bad.pdf",
    TESTDATA / "docx" / "pandoc_unicode.docx",
    TESTDATA / "md_txt" / "pandoc_tables.md",
    TESTDATA / "md_txt" / "chardet_windows-1252__ude_2.txt",
    ROOT / "tests" / "data" / "screenshot" / "order.png",
]
EXTENSIONS = [".pdf", ".docx", ".txt", ".md", ".markdown", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".zip", ".pptx",
              ""]
OWNER = "fuzz"


@st.composite
def mutated_file(draw) -> tuple[str, bytes]:
    """``(file name, bytes)``: a seed mutated, or random bytes, under its own or another extension."""
    how = draw(st.sampled_from(["flip", "cut", "splice", "random", "rename", "zip", "flip"]))
    seed = draw(st.sampled_from(SEEDS))
    data = bytearray(seed.read_bytes())
    ext = seed.suffix
    if how == "random":
        data = bytearray(draw(st.binary(min_size=0, max_size=4096)))
        ext = draw(st.sampled_from(EXTENSIONS))
    elif how == "flip":
        for _ in range(draw(st.integers(1, 16))):
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            data[at] = draw(st.integers(0, 255))
    elif how == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=512))
    elif how == "rename":
        ext = draw(st.sampled_from(EXTENSIONS))
    elif how == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(f"inner{seed.suffix}", bytes(data))
            archive.writestr("../escape.txt", b"a member that names a path outside the archive")
        data = bytearray(buffer.getvalue())
        if draw(st.booleans()):  # a damaged archive
            data = data[: draw(st.integers(0, len(data)))]
        ext = ".zip"
    return f"fuzz-{how}{ext}", bytes(data)


def upload_holds(documents: DocumentService, name: str, data: bytes, work: Path, max_bytes: int) -> str:
    """Upload one file as the API does (a zip opened into its members first): each is stored or refused with one
    sentence naming it; any other exception fails. Returns what happened: ``stored``, ``refused`` or ``skipped``.

    Raises:
        AssertionError: an exception other than ``DocumentError``, a sentence that does not name the file, or a
            file written outside ``work`` and the data dir.
    """
    path = work / name
    path.write_bytes(data)
    outcome = "skipped"
    with tempfile.TemporaryDirectory(dir=work) as members:
        bundle = expand([(path, name)], Path(members), max_bytes)
        assert all(isinstance(s, str) and name in s for s in bundle.skipped), bundle.skipped
        for member, member_name in bundle.files:
            assert Path(member).resolve().is_relative_to(work.resolve()), member
            try:
                documents.upload(OWNER, member, member_name)
                outcome = "stored"
            except DocumentError as exc:
                sentence = str(exc)
                assert sentence and "\n" not in sentence and "Traceback" not in sentence, sentence
                assert f"'{_clean(member_name)}'" in sentence or "file name" in sentence, (member_name, sentence)
                outcome = "refused" if outcome != "stored" else outcome
    path.unlink()
    return outcome


def _clean(name: str) -> str:
    """The name as the app stores and names it (``ingest.clean_name``), for matching its sentence."""
    from backend.documents.ingest import clean_name

    try:
        return clean_name(name)
    except DocumentError:
        return name


def json_values(ids: list[str]):
    """Any JSON value, weighted towards what breaks handlers: odd text (controls, lone surrogates, bidi
    overrides, 200,000 characters), ids of the caller's and paths out of the data dir, wrong containers."""
    nasty = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
    special = st.sampled_from(["", "../../etc/passwd", "/etc/passwd", "..", "*", "%s", "\x00", "\ud800", "\u202e",
                               "a" * 200_000, "0" * 32, "auto", "rag", "json", "INFO", "true", "-1", "1e308", *ids])
    scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | nasty | special
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


PATH = re.compile(r"(?<![\w.:/])/(?:tmp|etc|root|home|usr|var|proc|work|data|models)(?:/|\b)")


def check_answer(answer, name: str, data: list) -> None:
    """One endpoint's answer (``rawapi.Answer``): a result, or one sentence that is neither an unhandled exception
    (the guard's "Something went wrong") nor a leak (a traceback, a path on the server).

    Raises:
        AssertionError: naming the endpoint and the arguments.
    """
    text = json.dumps(answer.data if answer.ok else answer.error, ensure_ascii=False)
    assert answer.status == 200, (name, data, answer.raw[:300])
    assert answer.ok or answer.error, f"{name}{data!r:.300} got a blank error"
    assert "Something went wrong" not in text, f"{name}{data!r:.300}: {text}"
    assert "Traceback" not in text and not PATH.search(text), f"{name}{data!r:.300}: {text[:500]}"


def empty_dir(folder: Path) -> None:
    """Remove everything in a folder, keeping the folder."""
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
