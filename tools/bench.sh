#!/usr/bin/env bash
# End-to-end latency bench: osq int8/int4 vs our FP32 vs ONNX Runtime (dynamic + QDQ int8).
#
#   tools/bench.sh                       # headline: batch 1, seq 128, threads 1 and 2, 3 rounds
#   ROUNDS=5 tools/bench.sh              # more rounds
#   GRID=1 tools/bench.sh                # also the grid (GRID_BATCH=1,8,32 × GRID_SEQ=16,64,128,384)
#   CONCURRENT=1 tools/bench.sh          # also the concurrent mode (4 clients, batching queue)
#
# Steps: fetch model/data if missing (tools/fetch_model.sh, tools/fetch_data.py); quantize int8
# (w8a8) and int4 (w4a8) with `osq calibrate --method minmax`; build/check the ONNX Runtime models with
# tools/onnx_bench.py (its own timing kept for reference); then ROUNDS rounds of osq-serve-bench
# in which the osq engines AND ONNX Runtime (embedded Python worker, same token ids) are timed in
# the same interleaved blocks; then the median over rounds of every ratio
# (`osq-serve-bench summarize`). Everything lands in $OUT (default out/bench).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
MODEL="${MODEL:-models/all-MiniLM-L6-v2}"
OUT="${OUT:-out/bench}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-1,2}"
RUNS="${RUNS:-200}"          # onnx_bench.py reference runs
MAX_SECONDS="${MAX_SECONDS:-4}" # osq seconds per engine and cell and round
DATA="${DATA:-data/movie/eval.txt}"
ENGINES="${ENGINES:-fp32,int8,int4}"
CALIB="${CALIB:-data/movie/calib.txt}"
P8="$OUT/params-w8a8"
P4="$OUT/params-w4a8"

log() { echo "bench.sh: $*" >&2; }

# 1. Model and data.
if [[ ! -f "$MODEL/model.safetensors" ]]; then
  log "fetching the model"
  tools/fetch_model.sh
fi
if [[ ! -f "$DATA" || ! -f "$CALIB" ]]; then
  log "fetching the data"
  "$PYTHON" tools/fetch_data.py
fi

# 2. Build (release).
log "building (release)"
cargo build --release -p osq-serve-bench -p osq
BENCH="$ROOT/target/release/osq-serve-bench"

# 3. Quantize (every run, ~10 s each: the parameter format follows the code; KEEP_PARAMS=1 reuses).
quantize() { # bits dir
  local bits="$1" dir="$2"
  if [[ "${KEEP_PARAMS:-0}" == 1 && -f "$dir/quant.json" ]]; then
    log "$dir kept (KEEP_PARAMS=1)"
    return
  fi
  rm -rf "$dir"
  "$ROOT/target/release/osq" calibrate --method minmax --model "$MODEL" --data "$CALIB" \
    --bits "$bits" --output "$dir" --quiet
  log "calibrated $bits (MinMax) with osq calibrate -> $dir"
}
mkdir -p "$OUT"
quantize w8a8 "$P8"
quantize w4a8 "$P4"

# 4. ONNX Runtime models: tools/onnx_bench.py builds, checks and caches them in out/onnx (its own
#    timing, on a padded single sentence, is kept for reference in $OUT/ort-onnx_bench.json).
IFS=',' read -r -a TLIST <<<"$THREADS"
log "ONNX Runtime: build/check the models, reference timing (tools/onnx_bench.py)"
"$PYTHON" tools/onnx_bench.py --model "$MODEL" --out out/onnx --batch 1 --seq 128 \
  --threads "${TLIST[@]}" --runs "$RUNS" --json "$OUT/ort-onnx_bench.json" --check-outputs >&2

# 5. Rounds: osq engines and ORT (through the embedded worker, --ort-worker) timed in the same
#    interleaved blocks on the same 128-token inputs; the first round also probes memory.
files=()
for r in $(seq 1 "$ROUNDS"); do
  rd="$OUT/round-$r"
  mkdir -p "$rd"
  log "round $r/$ROUNDS: osq + ONNX Runtime interleaved (b1 s128, threads $THREADS)"
  mem=(--no-memory)
  [[ $r == 1 ]] && mem=()
  "$BENCH" --model "$MODEL" --params "$P8" --params-int4 "$P4" --data "$DATA" --engines "$ENGINES" \
    --batch 1 --seq 128 --threads "$THREADS" --max-seconds "$MAX_SECONDS" --min-runs 50 \
    --ort-worker --python "$PYTHON" --out "$rd" "${mem[@]}" | tee "$rd/summary.txt"
  files+=("$rd/results.json")
done

# 6. Optional: grid and concurrent mode.
if [[ "${GRID:-0}" == 1 ]]; then
  log "grid"
  mkdir -p "$OUT/grid"
  "$BENCH" --model "$MODEL" --params "$P8" --params-int4 "$P4" --data "$DATA" --engines "$ENGINES" \
    --batch "${GRID_BATCH:-1,8,32}" --seq "${GRID_SEQ:-16,64,128,384}" --threads "$THREADS" \
    --max-seconds 1 --min-runs 10 --ort-worker --python "$PYTHON" --no-memory --out "$OUT/grid" \
    | tee "$OUT/grid/summary.txt"
fi
if [[ "${CONCURRENT:-0}" == 1 ]]; then
  log "concurrent mode"
  mkdir -p "$OUT/serve"
  "$BENCH" --params "$P8" --model "$MODEL" --data "$DATA" --concurrent 4 --requests 2000 \
    --max-batch 1,8 --serve-threads 2 --out "$OUT/serve" | tee "$OUT/serve/summary.txt"
fi

# 7. Summary over rounds.
echo
echo "== median over $ROUNDS rounds (each ratio from one round's interleaved osq and ORT runs) =="
"$BENCH" summarize "${files[@]}" | tee "$OUT/summary.txt"
echo
echo "first round's memory and targets: $OUT/round-1/summary.txt; plots: $OUT/round-*/latency.svg"
