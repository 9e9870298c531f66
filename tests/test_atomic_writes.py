"""One ``write_atomically`` for every file that must never be half-written (issue 45): the users file, the
preflight's results, KV-cache entries and slot files, the bundled model. A write that fails part-way leaves the old
file and no temp file; the mode is set before the file appears."""

from __future__ import annotations

import ast
import stat

import pytest
from conftest import ROOT

from backend.storage import write_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "users.json"
    write_atomically(target, b'{"users": {}}', mode=0o600)
    assert target.read_bytes() == b'{"users": {}}' and stat.S_IMODE(target.stat().st_mode) == 0o600

    def half(f):
        f.write(b'{"users": {"ada"')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(target, half)
    assert target.read_bytes() == b'{"users": {}}' and sorted(p.name for p in tmp_path.iterdir()) == ["users.json"]
    write_atomically(target, lambda f: (f.write(b"part one, "), f.write(b"part two")))
    assert target.read_bytes() == b"part one, part two"


def test_nothing_renames_a_temp_file_into_place_by_itself():
    """``os.replace`` and ``os.rename`` appear in ``write_atomically`` alone."""
    found = []
    for path in (ROOT / "backend").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("replace", "rename") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(str(path.relative_to(ROOT)))
    assert sorted(set(found)) == ["backend/storage/disk.py"], found
