#!/usr/bin/env bash
# tools/eval.sh: does the deployed integer model keep FP32 accuracy? End to end on real labelled
# data (docs/eval.md):
#   1. fetch the model (tools/fetch_model.sh) and the data (tools/fetch_data.py) if missing;
#   2. train the linear probe on FP32 embeddings of data/movie/train.tsv (osq train-probe);
#   3. for every method × bits: osq calibrate (wall time + load average → calib-times.tsv), then
#      osq verify on VERIFY_LIMIT sentences of eval.txt with the same parameters;
#   4. osq eval on data/movie/test.tsv with the INTEGER executor, all parameter sets at once;
#   5. write out/eval/table.md (accuracy table, Table-4 pattern, + verify summary).
# Existing parameter directories and the probe are reused; FORCE=1 rebuilds them.
# A fine-tuned model (config.json names a *ForSequenceClassification, e.g. tools/finetune.py's
# models/ft-movie) is scored through its own quantized head instead of a probe (no step 2).
#
# Environment: MODEL, DATA, OUT, METHODS, BITS ("w8a8 w6a6 w4a8 w4a4"), VERIFY_LIMIT (64),
# VERIFY_ISA (all), THREADS (0 = all), LIMIT (test sentences, all), MAX_LEN (tokens per text in
# calibrate, verify and eval: 128; 512 for long documents such as data/bbc), CALIB_ARGS (extra arguments
# for osq calibrate), FORCE, OSQ (use this binary, no cargo build), EVAL (0: calibrate and verify
# only, no osq eval / table), RUNS (space-separated method:bits pairs, e.g. "os:w6a6 os+:w4a4";
# replaces the METHODS × BITS product).
# METHODS: space-separated, each one of (the paper's Table 3 ablation + Table 4 baselines)
#   minmax       MinMax, LayerNorm γ kept (the paper's baseline)   osq calibrate --method minmax --no-gamma
#   minmax-mean  mean of batch MinMax, γ kept                       --method minmax-mean --no-gamma
#   percentile   Percentile 0.99999, γ kept                         --method percentile --no-gamma
#   omse         OMSE, γ kept                                       --method omse --no-gamma
#   gm           Gamma Migration alone (MinMax ranges)              --method minmax
#   twc-coarse   Token-Wise Clipping coarse stage alone, γ kept     --method os --no-gamma --coarse-only
#   twc          Token-Wise Clipping (coarse + fine) alone, γ kept  --method os --no-gamma
#   os-coarse    Gamma Migration + TWC coarse stage                 --method os --coarse-only
#   os           Outlier Suppression: GM + TWC coarse + fine        --method os
#   os+          OS+: channel shifting/scaling + TWC                --method os+
# Default: "minmax percentile omse os os+". Calibration wall time, load average before/after and
# the exit status of every calibration go to $OUT/calib-times.tsv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODEL="${MODEL:-models/all-MiniLM-L6-v2}"
DATA="${DATA:-data/movie}"
OUT="${OUT:-out/eval}"
METHODS="${METHODS:-minmax percentile omse os os+}"
BITS="${BITS:-w8a8 w6a6 w4a8 w4a4}"
VERIFY_LIMIT="${VERIFY_LIMIT:-64}"
VERIFY_ISA="${VERIFY_ISA:-all}"
THREADS="${THREADS:-0}"
LIMIT="${LIMIT:-}"
CALIB_ARGS="${CALIB_ARGS:-}"
MAX_LEN="${MAX_LEN:-128}"
FORCE="${FORCE:-0}"

log() { echo "[eval.sh $(date +%H:%M:%S)] $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# method spec → osq calibrate arguments (empty: unknown spec)
calib_args() {
  case "$1" in
    minmax) echo "--method minmax --no-gamma" ;;
    minmax-mean) echo "--method minmax-mean --no-gamma" ;;
    percentile) echo "--method percentile --no-gamma" ;;
    omse) echo "--method omse --no-gamma" ;;
    gm) echo "--method minmax" ;;
    twc-coarse) echo "--method os --no-gamma --coarse-only" ;;
    twc) echo "--method os --no-gamma" ;;
    os-coarse) echo "--method os --coarse-only" ;;
    os) echo "--method os" ;;
    os+) echo "--method os+" ;;
    *) echo "" ;;
  esac
}
T0=$SECONDS

if [[ -z "${OSQ:-}" ]]; then
  log "building osq (release)"
  cargo build --release --quiet --bin osq
  OSQ="$ROOT/target/release/osq"
fi

if [[ ! -s "$MODEL/model.safetensors" || ! -s "$MODEL/tokenizer.json" ]]; then
  log "fetching the model into $MODEL"
  tools/fetch_model.sh "$MODEL"
fi
if [[ ! -s "$DATA/train.tsv" || ! -s "$DATA/test.tsv" || ! -s "$DATA/calib.txt" ]]; then
  log "fetching the data into data/movie"
  python3 tools/fetch_data.py
fi

mkdir -p "$OUT/params" "$OUT/verify" "$OUT/logs"
PROBE="$OUT/probe.json"
HEAD=0
if grep -q 'ForSequenceClassification' "$MODEL/config.json"; then HEAD=1; fi
if [[ $HEAD == 1 ]]; then
  log "$MODEL has a task head: scoring it directly (no probe)"
elif [[ "$FORCE" == 1 || ! -s "$PROBE" ]]; then
  log "training the probe on $DATA/train.tsv"
  "$OSQ" train-probe --model "$MODEL" --train "$DATA/train.tsv" -o "$PROBE" --cv-folds 5 \
    --threads "$THREADS" | tee "$OUT/logs/train-probe.txt"
else
  log "reusing $PROBE (FORCE=1 retrains)"
fi

HAVE_CALIBRATE=0
if "$OSQ" calibrate --help >/dev/null 2>&1; then HAVE_CALIBRATE=1; fi
log "osq calibrate available: $HAVE_CALIBRATE"

DIRS=()
VERIFY_ROWS=()
SKIPPED=()
if [[ -n "${RUNS:-}" ]]; then
  PAIRS="$RUNS"
else
  PAIRS=""
  for method in $METHODS; do for bits in $BITS; do PAIRS+=" $method:$bits"; done; done
fi
for pair in $PAIRS; do
  method="${pair%%:*}"
  bits="${pair#*:}"
  name="${method//+/plus}-$bits"
  dir="$OUT/params/$name"
  margs="$(calib_args "$method")"
  if [[ -z "$margs" ]]; then
    log "unknown method '$method' (see the header of tools/eval.sh); skipped"
    SKIPPED+=("$method $bits: unknown method")
    continue
  fi
  if [[ "$FORCE" == 1 || ! -s "$dir/quant.json" ]]; then
    rm -rf "$dir"
    if [[ $HAVE_CALIBRATE != 1 ]]; then
      log "$method: needs osq calibrate, not in this build; skipped"
      SKIPPED+=("$method $bits: osq calibrate not available")
      continue
    fi
    log "calibrating $method $bits ($margs)"
    la0="$(loadavg)"
    t=$(date +%s.%N)
    set +e
    # shellcheck disable=SC2086
    "$OSQ" calibrate $margs --model "$MODEL" --data "$DATA/calib.txt" --bits "$bits" \
      --threads "$THREADS" --max-len "$MAX_LEN" -o "$dir" $CALIB_ARGS >"$OUT/logs/calibrate-$name.txt" 2>&1
    rc=$?
    set -e
    secs=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$method" "$bits" "$secs" "$la0" "$(loadavg)" "$rc" \
      "$(date -u +%FT%TZ)" >>"$OUT/calib-times.tsv"
    if [[ $rc != 0 ]]; then
      log "calibrate $method $bits FAILED (see $OUT/logs/calibrate-$name.txt); skipped"
      SKIPPED+=("$method $bits: calibrate failed")
      continue
    fi
    log "  $method $bits calibrated in $secs s (load average before: $la0)"
  else
    log "reusing $dir"
  fi
  DIRS+=("$dir")
  vjson="$OUT/verify/$name.json"
  vrc="$OUT/verify/$name.rc"
  vkey="limit=$VERIFY_LIMIT isa=$VERIFY_ISA max_len=$MAX_LEN"
  if [[ "$FORCE" != 1 && -s "$vrc" && "$vrc" -nt "$dir/quant.json" && "$(sed -n 2p "$vrc")" == "$vkey" ]]; then
    rc="$(sed -n 1p "$vrc")"
    log "reusing the verify result of $name ($vkey)"
  else
    log "verifying $method $bits on $VERIFY_LIMIT sentences (--isa $VERIFY_ISA)"
    set +e
    "$OSQ" verify --params "$dir" --data "$DATA/eval.txt" --limit "$VERIFY_LIMIT" \
      --isa "$VERIFY_ISA" --max-len "$MAX_LEN" --model "$MODEL" --report "$vjson" >"$OUT/logs/verify-$name.txt" 2>&1
    rc=$?
    set -e
    printf '%s\n%s\n' "$rc" "$vkey" >"$vrc"
  fi
  case $rc in
    0) status="PASS (bit-exact)" ;;
    1) status="FAIL (codes differ)" ;;
    *) status="ERROR (exit $rc, see $OUT/logs/verify-$name.txt)" ;;
  esac
  log "  verify $method $bits: $status"
  VERIFY_ROWS+=("| $method | $bits | $status |")
done

if [[ "${EVAL:-1}" == 0 ]]; then
  log "EVAL=0: calibrated and verified ${#DIRS[@]} parameter set(s); no osq eval"
  for r in "${VERIFY_ROWS[@]}"; do echo "$r"; done
  exit 0
fi

EVAL_ARGS=(--model "$MODEL" --test "$DATA/test.tsv" --threads "$THREADS" --max-len "$MAX_LEN"
           --report "$OUT/eval.json" --markdown "$OUT/accuracy.md")
if [[ $HEAD == 0 ]]; then EVAL_ARGS+=(--probe "$PROBE"); fi
if [[ ${#DIRS[@]} -gt 0 ]]; then
  EVAL_ARGS+=(--params "$(IFS=,; echo "${DIRS[*]}")")
fi
if [[ -n "$LIMIT" ]]; then EVAL_ARGS+=(--limit "$LIMIT"); fi
log "evaluating ${#DIRS[@]} parameter set(s) + FP32 on $DATA/test.tsv"
"$OSQ" eval "${EVAL_ARGS[@]}" >"$OUT/logs/eval.txt"

{
  echo "# osq accuracy on real labelled data"
  echo
  echo "Generated by tools/eval.sh on $(date -u +%Y-%m-%d) (commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))."
  if [[ $HEAD == 1 ]]; then
    echo "Model: $MODEL (its own task head, integer up to the logits); test: $DATA/test.tsv."
  else
    echo "Model: $MODEL; probe: $PROBE; test: $DATA/test.tsv."
  fi
  echo
  cat "$OUT/accuracy.md"
  echo
  echo "## osq verify (integer vs deploy reference, $VERIFY_LIMIT sentences of $DATA/eval.txt)"
  echo
  echo "| method | bits | verify |"
  echo "|---|---|---|"
  for r in "${VERIFY_ROWS[@]}"; do echo "$r"; done
  if [[ -s "$OUT/calib-times.tsv" ]]; then
    echo
    echo "## Calibration wall time (osq calibrate, --threads $THREADS, $(nproc) cores; every run in $OUT/calib-times.tsv, last per method × bits here)"
    echo
    echo "| method | bits | seconds | load average before | after | exit |"
    echo "|---|---|---:|---|---|---:|"
    awk -F'\t' '{ k = $1 FS $2; last[k] = $0; if (!(k in seen)) { seen[k] = 1; order[++n] = k } }
      END { for (i = 1; i <= n; i++) { split(last[order[i]], f, FS);
        printf "| %s | %s | %s | %s | %s | %s |\n", f[1], f[2], f[3], f[4], f[5], f[6] } }' \
      "$OUT/calib-times.tsv"
  fi
  if [[ ${#SKIPPED[@]} -gt 0 ]]; then
    echo
    echo "Not evaluated:"
    for s in "${SKIPPED[@]}"; do echo "- $s"; done
  fi
  echo
  echo "Total time: $((SECONDS - T0)) s."
} >"$OUT/table.md"
cat "$OUT/table.md"
log "wrote $OUT/table.md in $((SECONDS - T0)) s"
