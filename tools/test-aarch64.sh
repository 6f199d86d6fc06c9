#!/usr/bin/env bash
# The osq-kernels tests on aarch64 under qemu-user, twice: QEMU_CPU=max (NEON + dotprod: scalar, neon
# and neon-dotprod are all compared to the reference) and QEMU_CPU=cortex-a72 (no dotprod: scalar and
# neon). OSQ_EXPECT_ISAS makes tests/all_isas.rs fail unless exactly the expected ISAs were
# detected, so each mode provably ran the paths it claims. Also lints the aarch64-only code.
# Needs the cross toolchain and qemu (tools/setup.sh); .cargo/config.toml sets linker and runner.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
step() { printf '\n==> %s\n' "$*"; }
die() {
  printf '\n*** test-aarch64: %s\n' "$*" >&2
  exit 1
}

command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc missing (run tools/setup.sh)"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 missing (run tools/setup.sh)"
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" ||
  die "rust target $TARGET missing (rustup target add $TARGET)"

# A forced ISA would make the comparison meaningless.
unset OSQ_ISA

step "clippy (aarch64)"
cargo clippy -p osq-kernels --target "$TARGET" --all-targets --release -- -D warnings ||
  die "clippy failed for $TARGET"

step "build tests (aarch64, release)"
cargo test -p osq-kernels --target "$TARGET" --release --no-run || die "build failed"

run_mode() {
  local cpu=$1 expect=$2 log
  step "tests under qemu: QEMU_CPU=$cpu, expecting ISAs $expect"
  log=$(mktemp)
  if ! QEMU_CPU=$cpu OSQ_EXPECT_ISAS=$expect \
    cargo test -p osq-kernels --target "$TARGET" --release 2>&1 | tee "$log"; then
    rm -f "$log"
    die "osq-kernels tests FAILED under QEMU_CPU=$cpu"
  fi
  # The ISA check lives in all_isas: make sure it really ran and passed.
  if ! grep -q '^test expected_isas_are_available \.\.\. ok$' "$log"; then
    rm -f "$log"
    die "all_isas did not run under QEMU_CPU=$cpu"
  fi
  rm -f "$log"
}

run_mode max scalar,neon,neon-dotprod
run_mode cortex-a72 scalar,neon

step "aarch64 OK (dotprod and non-dotprod)"
