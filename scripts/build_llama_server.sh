#!/usr/bin/env bash
# llama-server from the llama.cpp that the installed llama-cpp-python vendors (its sdist's vendor/llama.cpp), so a
# KV state saved by either one restores in the other (same llama.cpp state version and KV layout). The binary is
# built once per llama-cpp-python version into a cache outside the checkout and copied to .venv/bin/llama-server:
# the first build takes about 10 minutes on 2 cores, later runs (and a fresh checkout's) a second.
#   bash scripts/build_llama_server.sh     # after scripts/setup.sh; KVC_SERVER_CACHE moves the cache
set -euo pipefail
cd "$(dirname "$0")/.."

py=.venv/bin/python
version=$("$py" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')
cache="${KVC_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kvcache-chatbot}/llama-server-$version"
if [ ! -x "$cache/llama-server" ]; then
  echo "Building llama-server from llama-cpp-python $version's vendored llama.cpp (about 10 minutes on 2 cores)..."
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$py" -m pip --disable-pip-version-check -q download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
  tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
  src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
  # Static, no web UI download, no HTTPS client: the binary runs anywhere this one does, offline.
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    ${LLAMA_SERVER_CMAKE_ARGS:-} >"$work/cmake.log"
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" || { tail -30 "$work/build.log"; exit 1; }
  mkdir -p "$cache"
  cp "$work/build/bin/llama-server" "$cache/llama-server.tmp"
  mv "$cache/llama-server.tmp" "$cache/llama-server"
fi
cp "$cache/llama-server" .venv/bin/llama-server
echo "llama-server: .venv/bin/llama-server (llama-cpp-python $version)"
