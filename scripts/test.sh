#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite, slow tests included. Exit code 5 (nothing collected) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export WANDB_MODE=offline HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# two workers (2 cores); tests that share a session fixture are grouped onto one worker (xdist_group)
.venv/bin/python -m pytest -n "${PIPESYNTH_TEST_WORKERS:-2}" --dist loadgroup "$@"
rc=$?
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests — the suite is missing or broken" >&2
  exit 1
fi
exit "$rc"
