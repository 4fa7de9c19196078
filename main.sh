#!/usr/bin/env bash
# Set up .venv (first run) and run the main job: the edge-of-competence study (F1) end to end, at the scale
# that fits this machine -- `small` with a CUDA GPU, `tiny` on CPU. Extra flags go to study.py.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup.sh
scale=$(python -c "import torch; print('small' if torch.cuda.is_available() else 'tiny')")
procs=()  # on a CPU, pre-train as two DDP processes of one thread each (study.py --train_procs)
if [ "$scale" = tiny ] && [ "$(nproc)" -ge 2 ]; then procs=(--train_procs=2); fi
python study.py edge --scale "$scale" "${procs[@]}" "$@"
