"""The locks' fingerprint of ``pyproject.toml``: what the locks were compiled from, so a test can tell when a
dependency was changed without refreshing them (``tests/test_dependencies.py``).

    python scripts/lock.py digest     # prints the digest of pyproject.toml's requirements
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = "# pyproject-requirements-sha256: "


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """``pyproject.toml``'s requirements: ``{"": dependencies, extra: its requirements...}``, as written."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {"": list(project.get("dependencies", [])), **project.get("optional-dependencies", {})}


def digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """SHA-256 of the requirements (comments and layout left out), hex."""
    return hashlib.sha256(json.dumps(requirements(pyproject), sort_keys=True).encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    """The digest a lock file was compiled from (its ``HEADER`` line), or None."""
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(HEADER):
            return line[len(HEADER):].strip()
    return None


if __name__ == "__main__":
    if sys.argv[1:] != ["digest"]:
        sys.exit(__doc__)
    print(digest())
