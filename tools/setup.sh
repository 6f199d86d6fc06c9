#!/usr/bin/env bash
# One-time, idempotent setup of a fresh CI/dev machine for osq:
#   - aarch64 cross toolchain + qemu-user (apt; skipped when aarch64-linux-gnu-gcc and qemu-aarch64 exist)
#   - rustup target aarch64-unknown-linux-gnu, components clippy + rustfmt (skipped when present)
#   - Python packages from tools/requirements.txt (skipped when already satisfied)
#   - the model (tools/fetch_model.sh) and the labelled data (tools/fetch_data.py), when those exist
# Needs root (or sudo) only for the apt step. Fails loudly on the first error.
# Environment: PYTHON (default python3); OSQ_SETUP_FORCE_APT=1 runs the apt step even if the tools exist.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '==> setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
trap 'printf "setup: FAILED (line %s: %s)\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY not found"
command -v rustup >/dev/null || die "rustup not found (install Rust via rustup first)"

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

# --- Python --------------------------------------------------------------------------------------
if "$PY" - "$ROOT/tools/requirements.txt" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        ok &= version(name) == want
    except PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PY
then
  step "pip: tools/requirements.txt already satisfied"
else
  step "pip: installing tools/requirements.txt"
  PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    "$PY" -m pip install --quiet -r "$ROOT/tools/requirements.txt"
fi
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
step "done"
