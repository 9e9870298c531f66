"""Start one llama-server replica with the flags the app's KV caches need (``server_flags``).

    .venv/bin/python -m backend.inference.llama_server --model FILE --port N --slot-dir DIR [--threads T]
        [--host H] [--binary PATH]

The flags come from the app's own settings (``KVC_*``): flash attention, KV types, slots (``n_seq_max``), context
per slot. The command line is printed before the server starts (its process replaces this one), so the same flags
can be used on another machine, a GPU one included (a CUDA build of the same llama.cpp: docs/deploy.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from backend.inference.server_flags import AUTO_SLOTS, BUILD_HINT, ReplicaFlags, command, find_binary


def main(argv: list[str] | None = None) -> int:
    """Print the replica's command line, then run it in place of this process (see the module docstring)."""
    from backend.config import Settings

    parser = argparse.ArgumentParser(prog="python -m backend.inference.llama_server",
                                     description="Start one llama-server replica with the flags the app's caches need.")
    parser.add_argument("--model", type=Path, required=True, help="the GGUF file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slot-dir", type=Path, help="the slot directory every replica shares [KVC_REMOTE_SLOT_DIR]")
    parser.add_argument("--threads", type=int, help="CPU threads")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--binary", type=Path, help="llama-server executable (default: .venv/bin/llama-server)")
    args = parser.parse_args(argv)
    settings = Settings()
    binary = find_binary(args.binary)
    if binary is None:
        print(f"llama-server is not built; build it with `{BUILD_HINT}`.", file=sys.stderr)
        return 2
    slot_dir = args.slot_dir or settings.remote_slot_dir
    if slot_dir is not None:
        Path(slot_dir).mkdir(parents=True, exist_ok=True)
    flags = ReplicaFlags(args.model, settings.n_ctx, settings.n_seq_max or AUTO_SLOTS, settings.flash_attn,
                         settings.type_k, settings.type_v, slot_dir, args.threads, args.host, args.port)
    line = command(flags, binary)
    print(" ".join(line), flush=True)
    os.execv(line[0], line)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
