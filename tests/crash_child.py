"""A process for the crash tests to kill: it writes to a data dir through the real services and says on
stdout how far it got, one line at a time, so the test can SIGKILL it at a known step.

    python tests/crash_child.py upload DATA_DIR MODEL FILE...   # uploads each file: "progress ..." lines, then
                                                                # "acknowledged DOC_ID" when upload returns
    python tests/crash_child.py reindex DATA_DIR MODEL DOC_ID   # re-indexes an acknowledged document
    python tests/crash_child.py cache DATA_DIR MODEL N_BYTES    # KV-cache entries of N_BYTES, one after another
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def say(line: str) -> None:
    print(line, flush=True)


def main() -> None:
    from conftest import make_settings

    from backend.services import build_services

    action, data, model, *rest = sys.argv[1:]
    services = build_services(make_settings(Path(data), Path(model)))
    say("ready")
    if action == "upload":
        for name in rest:
            row, _ = services.documents.upload("local", Path(name), progress=lambda f, what: say(f"progress {what}"))
            say(f"acknowledged {row.doc_id}")
    elif action == "reindex":
        services.documents.reindex("local", rest[0], progress=lambda f, what: say(f"progress {what}"))
        say("acknowledged")
    elif action == "cache":
        state = os.urandom(int(rest[0]))
        fp = {"model_sha256": "crash-test"}
        for i in range(1_000_000):
            tokens = list(range(i, i + 64))
            key = hashlib.sha256(f"crash-{i}".encode()).hexdigest()[:32]
            services.kv_store.save(key, fp, tokens, state, [], "local")
            say(f"acknowledged {key} {i}")
    say("done")
    while True:  # wait to be killed, as a running app would
        time.sleep(1)


if __name__ == "__main__":
    main()
