#!/usr/bin/env bash
# One-time, idempotent setup of a fresh machine for osq.
#   tools/setup.sh          what the main job (tools/demo.sh) needs: Python packages of
#                           tools/requirements.txt, the model (tools/fetch_model.sh), the data
#   tools/setup.sh --tests  also what the test suite needs: the aarch64 cross toolchain + qemu-user
#                           (apt), rustup target aarch64 + clippy + rustfmt, tools/requirements-test.txt
#                           (maturin, pytest, Ray), and the `osq` Python wheel built from python/
#                           and installed
# Each step is skipped when already satisfied. Needs root (or sudo) only for apt. Fails loudly.
# Environment: PYTHON (default python3); OSQ_SETUP_FORCE_APT=1 runs the apt step even if the tools exist.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
trap 'printf "setup: FAILED (line %s: %s)\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

TESTS=0
for arg in "$@"; do
  case "$arg" in
    --tests) TESTS=1 ;;
    *) die "unknown argument $arg (expected --tests)" ;;
  esac
done
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY not found"
command -v rustup >/dev/null || die "rustup not found (install Rust via rustup first)"

if [ "$TESTS" = 1 ]; then
# --- system packages -----------------------------------------------------------------------------
if [ -z "${OSQ_SETUP_FORCE_APT:-}" ] && command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null; then
  step "apt: aarch64-linux-gnu-gcc and qemu-aarch64 already present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "apt-get needs root: run as root or install sudo"
    SUDO="sudo"
  fi
  step "apt: installing gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
  command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 still missing after apt-get install"
  command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc still missing after apt-get install"
fi

# --- Rust ----------------------------------------------------------------------------------------
targets="$(rustup target list --installed)"
components="$(rustup component list --installed)"
if grep -qx aarch64-unknown-linux-gnu <<<"$targets"; then
  step "rustup: target aarch64-unknown-linux-gnu already installed"
else
  step "rustup: adding target aarch64-unknown-linux-gnu"
  rustup target add aarch64-unknown-linux-gnu
fi
missing_components=()
for c in clippy rustfmt; do
  grep -q "^$c" <<<"$components" || missing_components+=("$c")
done
if [ ${#missing_components[@]} -eq 0 ]; then
  step "rustup: clippy and rustfmt already installed"
else
  step "rustup: adding ${missing_components[*]}"
  rustup component add "${missing_components[@]}"
fi
fi

# --- Python --------------------------------------------------------------------------------------
pip_install() { # requirements file: installs unless every pin is already satisfied
  local req="$1"
  if "$PY" - "$req" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    name = re.sub(r"\[.*\]", "", name)
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PY
  then
    step "pip: $(basename "$req") already satisfied"
  else
    step "pip: installing $(basename "$req")"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --quiet -r "$req"
  fi
}
pip_install "$ROOT/tools/requirements.txt"
"$PY" -c "import numpy, onnx, onnxruntime, safetensors, tokenizers" || die "Python packages do not import"

# --- model and data ------------------------------------------------------------------------------
if [ -f tools/fetch_model.sh ]; then
  step "model: tools/fetch_model.sh"
  bash tools/fetch_model.sh
fi
if [ -f tools/fetch_data.py ]; then
  step "data: tools/fetch_data.py"
  "$PY" tools/fetch_data.py
fi
if [ "$TESTS" = 1 ]; then
  pip_install "$ROOT/tools/requirements-test.txt"
  step "python: building the osq wheel from python/ (maturin) and installing it"
  rm -f "$ROOT"/target/wheels/osq-*.whl
  (cd "$ROOT/python" && CARGO_TARGET_DIR="$ROOT/target" "$PY" -m maturin build --release --quiet \
     -o "$ROOT/target/wheels")
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    "$PY" -m pip install --quiet --force-reinstall --no-deps "$ROOT"/target/wheels/osq-*.whl
  "$PY" -c "import osq; print('setup: osq wheel', osq.__version__)"
fi
step "done"
