#!/usr/bin/env bash
# One-command installer for addp-mm (see README). Idempotent: re-running skips what is in place.
#
#   bash tools/install.sh
#
# Environment:
#   PYTHON            interpreter to install into (default: python3 on PATH)
#   ADDP_MM_CACHE     where the built mmcv wheel is cached (default: ~/.cache/addp-mm)
#   FORCE_CUDA=1      build mmcv's CUDA ops even if no GPU is visible (needs nvcc)
#   MAX_JOBS          parallel compile jobs for mmcv (default: number of cores)
#   REBUILD_MMCV=1    build (and reinstall) mmcv even when it is installed / cached, e.g. after
#                     moving to a GPU machine
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "install.sh: unknown argument '$1' (it takes none; see --help)" >&2; exit 2 ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQ="$ROOT/requirements.txt"
PY="${PYTHON:-python3}"
CACHE="${ADDP_MM_CACHE:-$HOME/.cache/addp-mm}"
PIP=("$PY" -m pip install --disable-pip-version-check)

say() { printf '\n[addp-mm install] %s\n' "$*"; }
die() { printf '\n[addp-mm install] ERROR: %s\n' "$*" >&2; exit 1; }

# pin NAME -> the "NAME==X" (or NAME>=X / NAME) line of requirements.txt
pin() {
  local line
  line=$(grep -iE "^$1([=<>!~ ]|$)" "$REQ" | head -n1 || true)
  [ -n "$line" ] || die "requirements.txt has no line for '$1'"
  echo "$line"
}
version_of() { pin "$1" | sed -E 's/^[^=]*==//'; }

[ -f "$REQ" ] || die "missing $REQ"
command -v "$PY" >/dev/null || die "python interpreter '$PY' not found (set PYTHON=...)"

say "1/7 torch + torchvision ($(pin torch), $(pin torchvision))"
"${PIP[@]}" "$(pin torch)" "$(pin torchvision)" \
  || die "torch/torchvision install failed (they must match: see README 'Install')"

say "2/7 build tools ($(pin setuptools), ninja, wheel)"
"${PIP[@]}" "$(pin setuptools)" "$(pin ninja)" "$(pin wheel)" || die "setuptools/ninja/wheel install failed"

say "3/7 $(pin mmengine)"
"${PIP[@]}" "$(pin mmengine)" || die "mmengine install failed"

MMCV_VER=$(version_of mmcv)
read -r TORCH_VER CUDA_AVAIL < <("$PY" -c "import torch; print(torch.__version__.split('+')[0], int(torch.cuda.is_available()))")
WITH_CUDA=0
if [ "${FORCE_CUDA:-0}" = "1" ] || [ "$CUDA_AVAIL" = "1" ]; then WITH_CUDA=1; fi
FLAVOUR="torch${TORCH_VER}-$([ $WITH_CUDA = 1 ] && echo cuda || echo cpu)-$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VER-$FLAVOUR"

mmcv_ok() {
  "$PY" - "$MMCV_VER" "$WITH_CUDA" <<'PY' >/dev/null 2>&1
import sys
import mmcv
assert mmcv.__version__ == sys.argv[1], mmcv.__version__
from mmcv.ops import RoIAlign, nms  # noqa: F401  (compiled ops present)
if sys.argv[2] == '1':
    from mmcv.ops import get_compiling_cuda_version
    assert get_compiling_cuda_version() != 'not available'
PY
}

say "4/7 mmcv $MMCV_VER with compiled ops ($FLAVOUR)"
if [ "${REBUILD_MMCV:-0}" = "1" ]; then
  rm -rf "$WHEEL_DIR"
fi
if [ "${REBUILD_MMCV:-0}" != "1" ] && mmcv_ok; then
  echo "mmcv $MMCV_VER with ops already installed: skipping"
else
  WHEEL=$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$WHEEL" ]; then
    say "no cached mmcv wheel in $WHEEL_DIR: building from source."
    say "This is the long step (about 15 minutes on 2 CPU cores, longer with CUDA ops). Progress is shown below."
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
      "mmcv==$MMCV_VER" -d "$BUILD" || die "could not download the mmcv $MMCV_VER source from PyPI"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VER".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VER"
    # torch >= 2.6 headers need C++20; mmcv 2.1.0 hard-codes C++17
    grep -q -- "-std=c++17" "$SRC/setup.py" || die "mmcv setup.py no longer has -std=c++17: check the patch"
    sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
    [ $WITH_CUDA = 1 ] && export FORCE_CUDA=1
    mkdir -p "$WHEEL_DIR"
    # ninja prints one [k/N] line per compiled object: shown as progress; the full log is kept
    LOG="$CACHE/mmcv-build.log"
    say "full build log: $LOG"
    set +o pipefail
    (cd "$SRC" && "$PY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps -v \
        -w "$WHEEL_DIR.partial" . ; echo "pip-exit-status $?") 2>&1 | tee "$LOG" \
      | grep --line-buffered -oE '\[[0-9]+/[0-9]+\] ' \
      | sed -u 's/^\[\([0-9]*\)\/\([0-9]*\)\] $/  compiled object \1 of \2/'
    set -o pipefail
    if ! grep -q '^pip-exit-status 0$' "$LOG"; then
      grep -E 'error' "$LOG" | tail -n 20 >&2 || true
      die "mmcv build failed (errors above; full log in $LOG)"
    fi
    WHEEL=$(ls "$WHEEL_DIR.partial"/mmcv-*.whl 2>/dev/null | head -n1 || true)
    [ -n "$WHEEL" ] || die "mmcv build produced no wheel"
    mv "$WHEEL" "$WHEEL_DIR/" && rm -rf "$WHEEL_DIR.partial"
    WHEEL="$WHEEL_DIR/$(basename "$WHEEL")"
    say "cached $WHEEL"
  else
    echo "using cached wheel $WHEEL"
  fi
  "${PIP[@]}" --force-reinstall --no-deps "$WHEEL" || die "installing $WHEEL failed"
  "${PIP[@]}" "$WHEEL" || die "installing mmcv's dependencies failed"
  mmcv_ok || die "mmcv installed but 'from mmcv.ops import nms' fails (stale cache? delete $WHEEL_DIR)"
fi

say "5/7 toolboxes and the rest of requirements.txt"
"${PIP[@]}" -r "$REQ" || die "pip install -r requirements.txt failed"

say "6/7 addp-mm itself (editable)"
"${PIP[@]}" --no-build-isolation --no-deps -e "$ROOT" || die "editable install of addp-mm failed"

# Debian's chromium for the browser demo's test (tests/test_demo_app.py drives it with Playwright);
# CI machines run as root with apt
say "7/7 chromium for the browser demo's test"
if [ -x /usr/bin/chromium ]; then
  echo "$(/usr/bin/chromium --version 2>/dev/null | head -n1) already installed: skipping"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } \
    >/dev/null || die "apt-get install chromium failed"
  /usr/bin/chromium --version 2>/dev/null | head -n1
else
  echo "note: /usr/bin/chromium is missing and apt-get cannot run here (not root, or no apt):" \
    "tests/test_demo_app.py skips (fails under CI=true); install Debian's chromium package"
fi

"$PY" - <<'PY' || die "post-install check failed"
import torch, mmcv, mmengine, mmdet, mmseg, mmpretrain, addp_mm
from mmcv.ops import nms  # noqa: F401
print(f"torch {torch.__version__} | mmengine {mmengine.__version__} | mmcv {mmcv.__version__} | "
      f"mmdet {mmdet.__version__} | mmseg {mmseg.__version__} | mmpretrain {mmpretrain.__version__} | "
      f"addp_mm {addp_mm.__version__}")
PY
say "done"
