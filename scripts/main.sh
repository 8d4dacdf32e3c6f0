#!/usr/bin/env bash
# The main job on a fresh machine, offline but for package registries: set-up (once), then python -m src.main.
#   bash scripts/main.sh                          # fine-tune, 3 dev tasks (generate + baseline_gbdt), paper/
#   bash scripts/main.sh evaluate.tasks=null      # the whole dev suite (any src.main override)
# Progress goes to the terminal and to outputs/main/main/main.log (set-up: outputs/main/setup.log).
# Re-running resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p outputs/main
start=$(date +%s)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import src, sweeps" >/dev/null 2>&1; then
  echo "[set-up] scripts/setup.sh (log: outputs/main/setup.log)"
  bash scripts/setup.sh 2>&1 | tee outputs/main/setup.log
fi
echo "[set-up] done in $(( $(date +%s) - start )) s"
export WANDB_MODE="${WANDB_MODE:-offline}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
exec .venv/bin/python -m src.main "$@"
