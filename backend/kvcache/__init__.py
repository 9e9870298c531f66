"""KV caches: fingerprints and keys, the disk entries with their checksums and the RAM tier over
them, getting a prefix into the context (restore, chain or prefill and save), session snapshots,
prefetch, and the per-user catalog. Imports ``inference`` and ``documents`` (names), nothing above.
"""

from backend.kvcache.catalog import CacheCatalog, CacheInfo, CacheNotFound
from backend.kvcache.fingerprint import KV_TYPE_BYTES, entry_key, fingerprint, kv_bytes_per_token, tokens_sha256
from backend.kvcache.prefetch import Prefetcher, PrefetchJob
from backend.kvcache.prefix import (
                                         PrefixMiss,
                                         PrefixResult,
                                         ensure_prefix,
                                         prime,
                                         restore_prefix,
                                         saved_prefix,
                                         to_prime,
)
from backend.kvcache.ram_tier import RamTier
from backend.kvcache.replica_prefix import ReplicaCaches, ReplicaPrefix, slot_files_unsupported
from backend.kvcache.slots import SlotFileError, SlotFiles, read_slot_file, slot_name, write_slot_file
from backend.kvcache.snapshots import SessionSnapshots, Snapshot, Splice
from backend.kvcache.store import CacheEntry, CacheWriteError, KVCacheStore
from backend.kvcache.wiring import remote_parts

__all__ = ["KV_TYPE_BYTES", "CacheCatalog", "CacheEntry", "CacheInfo", "CacheNotFound", "CacheWriteError", "KVCacheStore",
           "PrefetchJob",
           "Prefetcher", "PrefixMiss", "PrefixResult", "RamTier", "ReplicaCaches", "ReplicaPrefix", "SessionSnapshots", "SlotFileError", "SlotFiles", "Snapshot", "Splice", "ensure_prefix",
           "entry_key", "fingerprint", "kv_bytes_per_token", "prime", "read_slot_file", "remote_parts", "restore_prefix", "saved_prefix", "slot_files_unsupported", "slot_name", "to_prime",
           "tokens_sha256", "write_slot_file"]
