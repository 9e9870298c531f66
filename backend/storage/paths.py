"""Names that become file paths, checked before any file is touched.

Every id a request may carry and the app turns into a path (a KV-cache key, a slot file's name, a document id, a
log run id) is first matched against the exact pattern the app itself generates, then joined to its folder and
resolved: the result must lie inside that folder. Anything else is treated as "does not exist" by the caller,
with no file opened, listed, pinned or deleted. This is OWASP ASVS 4.0 V12.3.1-V12.3.2 (user-supplied names are
validated and the canonical path is checked against the folder it must stay in).
"""

from __future__ import annotations

import re
from pathlib import Path

HEX_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex (documents, sessions) and the 32-hex SHA-256 cache/slot keys
RUN_ID = re.compile(r"\d{8}-\d{6}-[A-Za-z0-9._-]{1,90}")  # RunLogs.start: <YYYYmmdd-HHMMSS>-<model stem>[-n]


def is_hex_id(value: object) -> bool:
    """Whether ``value`` is a 32-character lowercase hex string: the shape of every document, session and cache id
    the app generates (``uuid.uuid4().hex``, ``entry_key``, ``slot_name``)."""
    return isinstance(value, str) and HEX_ID.fullmatch(value) is not None


def contained(folder: Path, name: object, pattern: re.Pattern = HEX_ID, suffix: str = "") -> Path | None:
    """The path ``folder/<name><suffix>`` when ``name`` is one the app could have made and the path, resolved
    (symbolic links and ``..`` followed), lies inside ``folder``; else None.

    Args:
        folder: the folder the file must lie in, e.g. ``data_dir/kvcache``.
        name: the id as a request gave it (any type: only a ``str`` matching ``pattern`` in full passes).
        pattern: what the app generates for this kind of id (``HEX_ID`` or ``RUN_ID``).
        suffix: appended to the name, e.g. ``".kv"``.

    Returns:
        The (unresolved) path inside ``folder``, or None for a name that must not be used; nothing is read or
        created either way.
    """
    if not isinstance(name, str) or pattern.fullmatch(name) is None:
        return None
    root = Path(folder).resolve()
    path = Path(folder) / f"{name}{suffix}"
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if resolved.parent == root else None
