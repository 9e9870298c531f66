"""The flags a llama-server replica needs for the app's KV caches, and where its executable is
(``python -m backend.inference.llama_server`` starts one with them).

A KV state moves between the app's in-process engine and a replica (and between replicas) only when both run the
same llama.cpp state version on the same model file with the same flash attention, KV types and KV layout
(llama.cpp refuses anything else: "incompatible V transposition", "n_stream mismatch"). So the replica gets the
app's own settings (``KVC_*``, read through ``Settings``): ``-fa`` from ``flash_attn``, ``-ctk``/``-ctv`` from
``type_k``/``type_v``, ``-np`` slots from ``n_seq_max`` (each a KV stream of its own: ``--no-kv-unified``, as the
engine loads), each slot ``n_ctx`` tokens, and ``--slot-save-path`` the shared slot directory
(``KVC_REMOTE_SLOT_DIR``). It describes itself in llama-server's informational ``--tags`` (listed by
``/v1/models``): ``kvc-model`` (the model file's identity, ``model_identity``), ``kvc-state`` (llama.cpp's
sequence-state version), ``kvc-fa``, ``kvc-ctk``, ``kvc-ctv``, ``kvc-streams``; the app compares those with its
own (``replica_fingerprint``) before it lets the replica read or write a shared slot file.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from backend.inference.registry import model_identity

AUTO_SLOTS = 4  # ``n_seq_max`` 0 (auto) picks at most 4 sequences (``loader.MAX_AUTO_SEQ``); a replica needs a number
TAG_PREFIX = "kvc-"


@dataclass(frozen=True)
class ReplicaFlags:
    """What a replica is started with.

    Attributes:
        model: the GGUF file.
        n_ctx: context window per slot, tokens (the app's ``n_ctx``).
        slots: ``-np``: parallel slots, one KV stream each (the app's ``n_seq_max``).
        flash_attn / type_k / type_v: as the app's settings.
        slot_dir: ``--slot-save-path``, the directory every replica shares (None: no slot files).
        threads: CPU threads (None: llama-server's default).
        host / port: where it listens.
    """

    model: Path
    n_ctx: int
    slots: int
    flash_attn: bool
    type_k: str
    type_v: str
    slot_dir: Path | None
    threads: int | None = None
    host: str = "127.0.0.1"
    port: int = 8080


def fingerprint_tags(flags: ReplicaFlags) -> dict[str, str]:
    """The replica's cache fingerprint as ``--tags`` entries (without the ``kvc-`` prefix)."""
    return {"model": model_identity(flags.model), "state": str(llama_cpp.LLAMA_STATE_SEQ_VERSION),
            "fa": "on" if flags.flash_attn else "off", "ctk": flags.type_k, "ctv": flags.type_v,
            "streams": str(flags.slots)}


def command(flags: ReplicaFlags, binary: Path | str) -> list[str]:
    """llama-server's command line for these flags.

    Args:
        flags: the replica's settings.
        binary: the llama-server executable.

    Returns:
        The argument list (``-c`` is the whole context: ``n_ctx`` for each of ``slots``).
    """
    tags = ",".join(f"{TAG_PREFIX}{k}={v}" for k, v in fingerprint_tags(flags).items())
    out = [str(binary), "-m", str(flags.model), "--host", flags.host, "--port", str(flags.port),
           "-c", str(flags.n_ctx * flags.slots), "-np", str(flags.slots), "--no-kv-unified",
           "-fa", "on" if flags.flash_attn else "off", "-ctk", flags.type_k, "-ctv", flags.type_v,
           "--tags", tags, "--no-webui"]
    if flags.slot_dir is not None:
        out += ["--slot-save-path", str(Path(flags.slot_dir).resolve()) + os.sep]
    if flags.threads:
        out += ["-t", str(flags.threads), "-tb", str(flags.threads)]
    return out


def find_binary(explicit: Path | str | None = None) -> Path | None:
    """The llama-server executable: ``explicit``, else the one ``scripts/build_llama_server.sh`` puts beside this
    Python (``.venv/bin/llama-server``), else one on ``PATH``; None when there is none."""
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    beside = Path(sys.executable).parent / "llama-server"
    if beside.is_file():
        return beside
    found = shutil.which("llama-server")
    return Path(found) if found else None


BUILD_HINT = "bash scripts/build_llama_server.sh"  # the one command that builds it (about 10 minutes on 2 cores)
