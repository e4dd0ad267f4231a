#!/usr/bin/env bash
# Check addp-mm on the stack OpenMMLab ships prebuilt (torch 2.1), beside the pinned one.
#
#   bash tools/check_torch21.sh [VENV_DIR]
#
# Creates (or reuses) a virtual environment VENV_DIR (default ~/.cache/addp-mm/venv-torch21)
# with torch 2.1.2, torchvision 0.16.2, numpy<2, mmengine 0.10.7, mmcv-lite 2.2.0 (no build),
# mmpretrain 1.2.0 and timm 1.0.31, all from the package registry (about 2 minutes), then runs
# the tests that need no compiled mmcv ops: backbone, window attention, pretraining model,
# generation, VQGAN, token predictor, safe loading, the restricted unpickler (payloads and its
# decisions against the table recorded from the pinned torch), the version checks, the reference
# outputs and the GPU check's CPU report
# (ADDP_REFERENCE_DIR, default ../shared/reference). mmdet / mmseg and the tools that train
# them need mmcv's ops and are not part of this check.
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$HOME/.cache/addp-mm/venv-torch21}"
PY="${PYTHON:-python3}"
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# the machine's constraints may cap torch at the pinned version: this environment needs 2.1
PIP_CONSTRAINT=/dev/null "$VENV/bin/pip" install -q --disable-pip-version-check \
  torch==2.1.2 torchvision==0.16.2 "numpy<2" setuptools==80.9.0 mmengine==0.10.7 \
  mmcv-lite==2.2.0 mmpretrain==1.2.0 timm==1.0.31 scipy pytest pytest-xdist
echo "[check_torch21] environment ready in $(( $(date +%s) - start )) s"
"$VENV/bin/python" -c "import torch, mmengine, mmcv, mmpretrain, timm; print('torch', torch.__version__, '| mmengine', mmengine.__version__, '| mmcv(-lite)', mmcv.__version__, '| mmpretrain', mmpretrain.__version__, '| timm', timm.__version__)"
cd "$ROOT"
"$VENV/bin/python" -m pytest -p no:cacheprovider -q -o addopts="" -n 2 --dist worksteal \
  tests/test_compat.py tests/test_backbone.py tests/test_window_attention.py \
  tests/test_pretrain_model.py tests/test_generation.py tests/test_vqgan.py \
  tests/test_token_predictor.py tests/test_safe_loading.py tests/test_restricted_unpickler.py \
  tests/test_verify_reference.py \
  tests/test_gpu_check.py \
  -k "not mmdet and not mmseg"   # (the toolboxes that need mmcv's compiled ops)
echo "[check_torch21] done in $(( $(date +%s) - start )) s"
