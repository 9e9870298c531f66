"""A GGUF file's header read without loading the model: its key/values and its tensors' shapes and types.

The ``gguf`` package's ``GGUFReader`` builds a numpy view for every element of every array, so reading
SmolLM2-135M's header (a 49,152-token vocabulary: three arrays of that length) took 4.0 s on this 2-core
CPU, twice per start (the load's check and the Model panel's list), on the way to the first screen. This
reader walks the same layout (GGUF v2/v3, as ``gguf-py`` and llama.cpp's ``gguf.cpp`` define it: magic, version,
tensor count, key/value count, the key/values, then each tensor's name, dimensions, type and offset) over a
memory map with ``struct`` and steps over arrays, keeping only their element type and length: 15 ms for the
same file. Every length is checked against the file's size, so a truncated or hostile header raises
``ValueError`` instead of reading past the end.
"""

from __future__ import annotations

import functools
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"GGUF"
VERSIONS = (2, 3)
# GGUF value types -> struct format (llama.cpp's enum gguf_type); 8 is a string, 9 an array
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class GgufArray:
    """An array value, not read: its element type (a GGUF value type number) and its length."""

    item_type: int
    length: int


@dataclass(frozen=True)
class GgufTensor:
    """One tensor's description: name, element count, ggml type number (``gguf.GGMLQuantizationType``) and
    its data's offset from the start of the data section, bytes."""

    name: str
    n_elements: int
    type: int
    offset: int = 0


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF header says.

    Attributes:
        version: the GGUF version (2 or 3).
        fields: key -> value: ``int``, ``float``, ``bool``, ``str``, or ``GgufArray`` for arrays.
        tensors: every tensor, in file order.
        data_start: where the tensor data begins (the header's end, aligned to ``general.alignment``), bytes.
    """

    version: int
    fields: dict
    tensors: tuple[GgufTensor, ...]
    data_start: int = 0

    def data_end(self) -> int:
        """Where the last tensor's data ends, bytes from the start of the file: a file shorter than this was
        cut off. Tensor sizes come from ``gguf.GGML_QUANT_SIZES`` (block size, bytes per block)."""
        import gguf

        end = self.data_start
        for t in self.tensors:
            block, size = gguf.GGML_QUANT_SIZES.get(gguf.GGMLQuantizationType(t.type), (1, 0))
            end = max(end, self.data_start + t.offset + t.n_elements // block * size)
        return end

    @property
    def architecture(self) -> str:
        """``general.architecture`` ("" when absent)."""
        value = self.fields.get("general.architecture")
        return value if isinstance(value, str) else ""

    def arch_field(self, suffix: str):
        """The value of ``<architecture>.<suffix>`` (e.g. ``context_length``), or None."""
        return self.fields.get(f"{self.architecture}.{suffix}")


class _Cursor:
    """Reads little- or big-endian values from a buffer, refusing to step past its end."""

    def __init__(self, data, order: str):
        self.data, self.order, self.at = data, order, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ValueError("the header runs past the end of the file")
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.at)
        self.at += size
        return value

    def skip(self, n: int) -> None:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError("the header runs past the end of the file")
        self.at += n

    def string(self) -> str:
        n = self.take("Q")
        start = self.at
        self.skip(n)
        return bytes(self.data[start:self.at]).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind == STRING:
            return self.string()
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind != ARRAY:
            raise ValueError(f"unknown GGUF value type {kind}")
        item, length = self.take("I"), self.take("Q")
        if item == STRING:  # a vocabulary: 49k-151k strings, stepped over in one tight loop
            data, at, end = self.data, self.at, len(self.data)
            unpack = struct.Struct(self.order + "Q").unpack_from
            for _ in range(length):
                if at + 8 > end:
                    raise ValueError("the header runs past the end of the file")
                at += 8 + unpack(data, at)[0]
            if at > end:
                raise ValueError("the header runs past the end of the file")
            self.at = at
        elif item in _SCALARS:
            self.skip(struct.calcsize(_SCALARS[item]) * length)
        else:  # nested arrays: no model file uses them; gguf-py flattens them too
            for _ in range(length):
                self.value(item)
        return GgufArray(item, length)


def read_header(path: Path) -> GgufHeader:
    """Read a GGUF file's key/values and tensor descriptions (memoized per path, size and mtime).

    Args:
        path: the file.

    Returns:
        The header.

    Raises:
        ValueError: not a GGUF file (wrong magic), an unsupported version, or a header that is cut off or
            claims more than the file holds.
        OSError: the file cannot be opened.
    """
    path = Path(path).resolve()
    stat = path.stat()
    return _read(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read(path: str, size: int, mtime_ns: int) -> GgufHeader:
    with open(path, "rb") as f:
        if size < 24:
            raise ValueError("the file is too short to be a GGUF file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:4] != MAGIC:
                raise ValueError("GGUF magic invalid")
            order = "<" if struct.unpack_from("<I", data, 4)[0] & 0xFFFF else ">"  # a byte-swapped file reads as v<<16
            cur = _Cursor(data, order)
            cur.skip(4)
            version = cur.take("I")
            if version not in VERSIONS:
                raise ValueError(f"GGUF version {version} is not supported")
            n_tensors, n_fields = cur.take("Q"), cur.take("Q")
            fields = {}
            for _ in range(n_fields):
                key = cur.string()
                fields[key] = cur.value(cur.take("I"))
            tensors = []
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = cur.take("I")
                if n_dims > 8:
                    raise ValueError(f"tensor {name} claims {n_dims} dimensions")
                n = 1
                for _ in range(n_dims):
                    n *= cur.take("Q")
                kind = cur.take("I")
                tensors.append(GgufTensor(name, n, kind, cur.take("Q")))
            align = fields.get("general.alignment", 32)
            align = align if isinstance(align, int) and align > 0 else 32
            start = -(-cur.at // align) * align
    return GgufHeader(version, fields, tuple(tensors), start)
