"""The GGUF header reader against the ``gguf`` package's own reader, on real and synthetic files, and on
files cut short."""

from __future__ import annotations

import gguf
import pytest

from backend.inference import describe
from backend.inference.gguf_header import GgufArray, read_header


def _theirs(path):
    """Every key/value and tensor as gguf-py's ``GGUFReader`` reads them (arrays as (type, length))."""
    reader = gguf.GGUFReader(path)
    fields = {}
    for name, field in reader.fields.items():
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            fields[name] = (int(field.types[1]), len(field.data))
        else:
            value = field.contents()
            fields[name] = value
    tensors = [(t.name, int(t.n_elements), int(t.tensor_type)) for t in reader.tensors]
    return fields, tensors


@pytest.mark.parametrize("which", ["smollm2", "tiny_model"])
def test_header_matches_gguf_py(which, request):
    path = request.getfixturevalue(which)
    header = read_header(path)
    fields, tensors = _theirs(path)
    assert set(header.fields) == set(fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    for key, value in header.fields.items():
        if isinstance(value, GgufArray):
            assert (value.item_type, value.length) == fields[key], key
        elif isinstance(value, float):
            assert value == pytest.approx(float(fields[key]), rel=1e-6), key
        else:
            assert value == fields[key], key
    assert [(t.name, t.n_elements, t.type) for t in header.tensors] == tensors


def test_real_model_described_from_its_header(smollm2):
    info = describe(smollm2)
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "Q4_1", 8192)
    assert info.parameters == 134_515_008 and info.has_chat_template and not info.error
    assert read_header(smollm2).fields["tokenizer.ggml.tokens"] == GgufArray(8, 49_152)


@pytest.mark.parametrize("which", ["smollm2", "tiny_model"])
def test_the_tensor_data_ends_where_the_file_does(which, request):
    path = request.getfixturevalue(which)
    assert read_header(path).data_end() == path.stat().st_size


@pytest.mark.parametrize("keep", [3, 23, 4096, 600_000])
def test_a_header_cut_short_is_refused_not_read_past_its_end(smollm2, tmp_path, keep):
    cut = tmp_path / f"cut{keep}.gguf"
    cut.write_bytes(smollm2.read_bytes()[:keep])
    with pytest.raises(ValueError):
        read_header(cut)
    assert describe(cut).error.startswith("It is not a readable GGUF file")


def test_not_a_gguf_is_refused(tmp_path):
    fake = tmp_path / "page.gguf"
    fake.write_bytes(b"<html>" + b"x" * 100)
    with pytest.raises(ValueError, match="magic"):
        read_header(fake)
