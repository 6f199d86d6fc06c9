#!/usr/bin/env bash
# End-to-end latency bench: osq int8/int4 vs our FP32 vs the int8 peers: OpenVINO + NNCF, ONNX
# Runtime on its transformer-optimized graph (quantize_dynamic per-tensor and per-channel) and on
# the plain graph (dynamic + QDQ).
#
#   tools/bench.sh                       # the peer cells: b1 × s16/s128/s384 and b32 s128, threads 1
#                                        # and 2, 3 rounds, peers interleaved; then one round with
#                                        # every engine timed alone (the interleaving check)
#   ROUNDS=5 tools/bench.sh              # more rounds (ROUNDS=0: only the alone round)
#   GRID=1 tools/bench.sh                # also the grid (GRID_BATCH=1,8,32 × GRID_SEQ=16,64,128,384)
#   CONCURRENT=1 tools/bench.sh          # also the concurrent mode (4 clients, batching queue)
#   MODEL=models/all-mpnet-base-v2 OUT=out/bench-mpnet tools/bench.sh   # another model
#                                        # (tools/fetch_mpnet.sh; peers cached in out/onnx-<name>)
#
# Steps: fetch model/data if missing (tools/fetch_model.sh, tools/fetch_data.py); quantize int8
# (w8a8) and int4 (w4a8) with `osq calibrate --method minmax`; install the bench-only peers
# (tools/requirements-bench.txt: openvino, nncf; never in CI) and build/check their models with
# tools/onnx_bench.py and tools/peers.py; then ROUNDS rounds of osq-serve-bench in which the osq
# engines AND the peers (embedded Python worker, same token ids, ORT spinning off, a settle pause
# between engines) are timed in the same interleaved blocks; then one round with every engine
# timed alone, back to back (ALONE=0 skips it); then the median over rounds of every ratio,
# including osq / fastest int8 peer per cell (`osq-serve-bench summarize`). Everything lands in
# $OUT (default out/bench). Without the peers' packages the ORT plain-graph rows still run.
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
ENGINES="${ENGINES:-int8,int4}"
CELLS="${CELLS:-1:16,128,384 32:128}"   # batch:seqs ...
PEERS="${PEERS:-ort-int8-dynamic,ort-int8-qdq,ort-opt-int8-pt,ort-opt-int8-pc,ov-int8-nncf}"
CALIB="${CALIB:-data/movie/calib.txt}"
# Peer models are cached per model: out/onnx for the default, out/onnx-<name> for any other.
if [[ "$MODEL" == models/all-MiniLM-L6-v2 ]]; then ONNX_OUT="${ONNX_OUT:-out/onnx}"; else ONNX_OUT="${ONNX_OUT:-out/onnx-$(basename "$MODEL")}"; fi
P8="$OUT/params-w8a8"
P4="$OUT/params-w4a8"

log() { echo "bench.sh: $*" >&2; }

# 1. Model and data.
if [[ ! -f "$MODEL/model.safetensors" ]]; then
  log "fetching the model"
  case "$MODEL" in
    models/all-MiniLM-L6-v2) tools/fetch_model.sh ;;
    models/all-mpnet-base-v2) tools/fetch_mpnet.sh ;;
    *) log "$MODEL/model.safetensors not found"; exit 1 ;;
  esac
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

# 4. Peer models: tools/onnx_bench.py builds, checks and caches the plain ONNX graph and ORT's
#    quantized forms in $ONNX_OUT (its own timing kept for reference); tools/peers.py builds the
#    transformer-optimized ORT graphs and OpenVINO + NNCF int8 (bench-only packages).
IFS=',' read -r -a TLIST <<<"$THREADS"
log "ONNX Runtime: build/check the plain-graph models (tools/onnx_bench.py)"
"$PYTHON" tools/onnx_bench.py --model "$MODEL" --out "$ONNX_OUT" --batch 1 --seq 128 \
  --threads "${TLIST[@]}" --runs "$RUNS" --json "$OUT/ort-onnx_bench.json" --check-outputs >&2
if ! "$PYTHON" -c "import openvino, nncf" 2>/dev/null; then
  log "installing the bench-only peers (tools/requirements-bench.txt)"
  "$PYTHON" -m pip install --quiet -r tools/requirements-bench.txt \
    || log "peers not installed: OpenVINO and the optimized ORT graphs are skipped"
fi
if "$PYTHON" -c "import openvino, nncf" 2>/dev/null; then
  "$PYTHON" tools/peers.py --model "$MODEL" --out "$ONNX_OUT" >&2
fi

# 5. Rounds: osq engines and the peers (embedded worker, --peer-worker) timed in the same
#    interleaved blocks on the same inputs, per cell group of CELLS; the first round also probes
#    memory; then one round with every engine alone (ALONE=1, default).
files=()
round() { # dir, extra args...
  local rd="$1"
  shift
  mkdir -p "$rd"
  local first=1
  for cell in $CELLS; do
    local b="${cell%%:*}" seqs="${cell#*:}"
    local mem=(--no-memory)
    [[ $first == 1 && "$rd" == */round-1 ]] && mem=()
    first=0
    "$BENCH" --model "$MODEL" --params "$P8" --params-int4 "$P4" --data "$DATA" --engines "$ENGINES" \
      --batch "$b" --seq "$seqs" --threads "$THREADS" --max-seconds "$MAX_SECONDS" --min-runs 20 \
      --peer-worker --peers "$PEERS" --peer-dir "$ONNX_OUT" --python "$PYTHON" --out "$rd/b$b" "${mem[@]}" "$@" \
      | tee "$rd/b$b.txt"
    files+=("$rd/b$b/results.json")
  done
}
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS: osq + peers interleaved (cells $CELLS, threads $THREADS)"
  round "$OUT/round-$r"
done
interleaved=("${files[@]}")
if [[ "${ALONE:-1}" == 1 ]]; then
  log "alone round: every engine timed back to back"
  files=()
  round "$OUT/alone" --alone
  alone=("${files[@]}")
fi

# 6. Optional: grid and concurrent mode.
if [[ "${GRID:-0}" == 1 ]]; then
  log "grid"
  mkdir -p "$OUT/grid"
  "$BENCH" --model "$MODEL" --params "$P8" --params-int4 "$P4" --data "$DATA" --engines "$ENGINES" \
    --batch "${GRID_BATCH:-1,8,32}" --seq "${GRID_SEQ:-16,64,128,384}" --threads "$THREADS" \
    --max-seconds 1 --min-runs 10 --peer-worker --peers "$PEERS" --peer-dir "$ONNX_OUT" --python "$PYTHON" --no-memory --out "$OUT/grid" \
    | tee "$OUT/grid/summary.txt"
fi
if [[ "${CONCURRENT:-0}" == 1 ]]; then
  log "concurrent mode"
  mkdir -p "$OUT/serve"
  "$BENCH" --params "$P8" --model "$MODEL" --data "$DATA" --concurrent 4 --requests 2000 \
    --max-batch 1,8 --serve-threads 2 --out "$OUT/serve" | tee "$OUT/serve/summary.txt"
fi

# 7. Summary over rounds.
if [[ ${#interleaved[@]} -gt 0 ]]; then
  echo
  echo "== median over $ROUNDS interleaved rounds (each ratio from one round's runs) =="
  "$BENCH" summarize "${interleaved[@]}" | tee "$OUT/summary.txt"
fi
if [[ "${ALONE:-1}" == 1 ]]; then
  echo
  echo "== alone round (engines back to back): the same ratios, to check the interleaving =="
  "$BENCH" summarize "${alone[@]}" | tee "$OUT/summary-alone.txt"
fi
echo
echo "memory and targets: $OUT/round-1/b1.txt; plots: $OUT/round-*/b*/latency.svg"
