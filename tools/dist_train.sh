#!/usr/bin/env bash
# Multi-process training with torchrun: tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Works on GPUs (nccl) and on CPU-only machines (gloo, one process per NUM_PROCS).
set -euo pipefail
usage() {
  cat <<'USAGE'
Usage: tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py options...]
  Trains CONFIG in NUM_PROCS processes with torchrun (one per GPU; gloo on a CPU-only machine).
  Environment: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1).
  e.g. tools/dist_train.sh configs/pretrain/addp_vit-base-p16_32xb128-amp-coslr-1600e_in1k-256px.py 8 --auto-scale-lr
USAGE
}
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
python -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$GPUS" --master_port="$PORT" "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
