#!/usr/bin/env bash
# Install the llama.cpp reference that `forge-bench decode` and `forge-bench
# serve` compare against: llama-cpp-python 0.3.36 built from source, with its
# `server` extra (uvicorn, fastapi, sse-starlette, starlette-context,
# pydantic-settings: what `python -m llama_cpp.server` imports), into a
# virtual environment (default: .venv-bench at the repository root, the
# default of `forge-bench decode --python` and `forge-bench serve --python`).
#
#   benches/setup_llama_cpp.sh [VENV_DIR]
#
# The build flags matter: a native build (-DGGML_NATIVE=ON, the default)
# enables AMX on CPUs that report it and crashes in libggml-cpu on these
# machines, and pip's wheel cache can hand back such a build, hence
# --no-cache-dir --no-binary. Needs python3 (with venv), a C/C++ compiler
# and cmake (pip fetches cmake/ninja as build dependencies if missing).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO_ROOT/.venv-bench}"
PYTHON="${PYTHON:-python3}"
VERSION="0.3.36"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
# Keep the environment out of git whatever the repository's .gitignore says.
echo '*' > "$VENV/.gitignore"

# The flags of the project's machines (AVX-512, no AMX). On a CPU without
# AVX-512 the AVX-512 flag is dropped; LLAMA_CMAKE_ARGS overrides it all.
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AMX_INT8=OFF"
if [ -r /proc/cpuinfo ] && ! grep -qw avx512f /proc/cpuinfo; then
    FLAGS="${FLAGS/ -DGGML_AVX512=ON/}"
fi
FLAGS="${LLAMA_CMAKE_ARGS:-$FLAGS}"
echo "CMAKE_ARGS=$FLAGS" >&2

CMAKE_ARGS="$FLAGS" \
    "$VENV/bin/python" -m pip install --no-cache-dir --no-binary llama-cpp-python "llama-cpp-python[server]==$VERSION"

"$VENV/bin/python" -c "import llama_cpp, llama_cpp.server.app; print('llama-cpp-python', llama_cpp.__version__, '(with the server) ready in $VENV')"
