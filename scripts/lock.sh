#!/usr/bin/env bash
# Refresh the locks from pyproject.toml (one command; needs uv: `pip install uv`):
#   bash scripts/lock.sh
# requirements.lock       the app's packages, exact versions with hashes (scripts/setup.sh)
# requirements-test.lock  the app's, the tests' and the benchmarks' (scripts/setup.sh --test, CI)
# requirements.txt        what a Hugging Face Space installs: the app's packages and torch, with hashes
# torch is left out of the first two: setup.sh installs the CPU build first (TORCH_SPEC), resolved here from the
# CPU wheel in TORCH_LINKS (default /opt/wheels, else PyTorch's CPU index) so nothing of CUDA is locked.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
TORCH=${TORCH:-2.13.0}
if [ -d "${TORCH_LINKS:-/opt/wheels}" ]; then cpu=(--find-links "${TORCH_LINKS:-/opt/wheels}")
else cpu=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match); fi
target=(--python-version 3.11.3 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header
        --no-annotate)
digest=$(python3 scripts/lock.py digest)
compile() {  # output, then uv arguments
  local out=$1; shift
  {
    echo "# Compiled from pyproject.toml by 'bash scripts/lock.sh' ($("$UV" --version)); do not edit."
    echo "# pyproject-requirements-sha256: $digest"
    "$UV" pip compile pyproject.toml "${target[@]}" "$@"
  } > "$out.tmp"
  mv "$out.tmp" "$out"
}
compile requirements.lock "${cpu[@]}" --no-emit-package torch -c <(echo "torch==$TORCH+cpu")
compile requirements-test.lock --extra test --extra bench "${cpu[@]}" --no-emit-package torch \
  -c <(echo "torch==$TORCH+cpu")
compile requirements.txt -c <(echo "torch==$TORCH")
echo "locks refreshed: requirements.lock, requirements-test.lock, requirements.txt"
