#!/usr/bin/env bash
# Every test osq has: formatting and lints, the workspace tests on x86-64 (every ISA this CPU has,
# against the scalar reference), the real-model checks, and the kernels under qemu-aarch64 with and
# without dotprod, the docs and packaging, `osq serve` over HTTP, and the Python wheel (pytest,
# Ray). Run `tools/setup.sh --tests` once first on a fresh machine (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "clippy (x86-64)"
cargo clippy --workspace --all-targets --release -- -D warnings

step "real models, labelled data and the numpy FP32 reference (idempotent)"
tools/fetch_model.sh
python3 tools/fetch_data.py
python3 tools/ref_fp32.py
MPNET=1
tools/fetch_mpnet.sh || { MPNET=0; echo "SKIP: all-mpnet-base-v2 could not be fetched: its tests skip"; }
SRE=1
tools/fetch_model.sh models/sre-embedding-model sre-embedding-model==1.0.0 sre_embedding_model/model_weights \
  || { SRE=0; echo "SKIP: sre-embedding-model could not be fetched: its tests skip"; }

step "tests (x86-64; ISAs here: $(grep -o -w -E 'avx2|avx512_vnni' /proc/cpuinfo | sort -u | tr '\n' ' '))"
cargo test --workspace --release

step "real model: integer executor bit-exact with the fake-quant reference (w8a8, w6a6; every ISA here)"
OSQ="${CARGO_TARGET_DIR:-target}/release/osq"
for bits in w8a8 w6a6; do
  "$OSQ" calibrate --model models/all-MiniLM-L6-v2 --data data/movie/calib.txt --bits "$bits" -o "out/ci/minmax-$bits" --quiet
  "$OSQ" verify --params "out/ci/minmax-$bits" --model models/all-MiniLM-L6-v2 --data data/movie/eval.txt \
    --limit 32 --isa all --report "out/ci/verify-$bits.json"
done

if [ "$MPNET" = 1 ]; then
  step "all-mpnet-base-v2 (MPNet, 768 / 12 layers): integer executor bit-exact (w8a8 MinMax, every ISA here)"
  "$OSQ" calibrate --model models/all-mpnet-base-v2 --data data/movie/calib.txt --bits w8a8 --samples 64 \
    -o out/ci/mpnet-minmax-w8a8 --quiet
  "$OSQ" verify --params out/ci/mpnet-minmax-w8a8 --model models/all-mpnet-base-v2 --data data/movie/eval.txt \
    --limit 8 --isa all --report out/ci/verify-mpnet-w8a8.json
fi

if [ "$SRE" = 1 ]; then
  step "sre-embedding-model (the second real BERT): integer executor bit-exact (w6a6 MinMax, every ISA here)"
  "$OSQ" calibrate --model models/sre-embedding-model --data data/movie/calib.txt --bits w6a6 \
    -o out/ci/sre-minmax-w6a6 --quiet
  "$OSQ" verify --params out/ci/sre-minmax-w6a6 --model models/sre-embedding-model --data data/movie/eval.txt \
    --limit 16 --isa all --report out/ci/verify-sre-w6a6.json
fi

step "the library example on the real model (examples/embed.rs)"
cargo run --release -q --example embed -- out/ci/minmax-w8a8 "A gripping, beautifully acted film." "Dull."

step "docs (rustdoc without warnings) and packaging (cargo package --workspace --no-verify)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q
cargo package --workspace --no-verify --allow-dirty -q

step "Python wheel: pytest (bit-exact with the CLI, threads, errors, Ray batch job)"
cargo build --release -q --example tiny_fixture
OSQ_BIN="$OSQ" python3 -m pytest -q python/tests

if [ -x tools/test-aarch64.sh ]; then
  step "tests (aarch64 under qemu, with and without dotprod)"
  tools/test-aarch64.sh
fi

step "real model on aarch64 under qemu: integer executor bit-exact (w8a8, 2 sentences; with and without dotprod)"
cargo build --release -q -p osq --target aarch64-unknown-linux-gnu
OSQ_ARM="${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/osq"
for cpu in max cortex-a72; do
  QEMU_CPU=$cpu qemu-aarch64 -L /usr/aarch64-linux-gnu "$OSQ_ARM" verify --params out/ci/minmax-w8a8 \
    --model models/all-MiniLM-L6-v2 --data data/movie/eval.txt --limit 2 --isa all
done

# calibrate fixture $1 at bits $2 into out/ci/$3, then verify it under qemu with and without dotprod
qemu_fixture() {
  "$OSQ" calibrate --model "$1" --data tests/fixtures/families/sentences.txt --bits "$2" --samples 64 \
    -o "out/ci/$3" --quiet
  for cpu in max cortex-a72; do
    QEMU_CPU=$cpu qemu-aarch64 -L /usr/aarch64-linux-gnu "$OSQ_ARM" verify --params "out/ci/$3" \
      --data tests/fixtures/families/sentences.txt --limit 4 --isa all >/dev/null
  done
}

step "every model family on aarch64 under qemu: the tiny transformers fixtures bit-exact (w8a8 and w6a6)"
for fam in tests/fixtures/families/*/; do
  name="$(basename "$fam")"
  for bits in w8a8 w6a6; do
    qemu_fixture "$fam" "$bits" "family-$name-$bits"
  done
  echo "$name: NEON (dotprod and not) bit-exact at w8a8 and w6a6"
done

step "W6A6P8 (8-bit attention probabilities) on aarch64 under qemu: bit-exact"
qemu_fixture tests/fixtures/families/bert w6a6p8 family-bert-w6a6p8
echo "bert w6a6p8: NEON (dotprod and not) bit-exact"

step "every family x task head on aarch64 under qemu: head codes and logits bit-exact (w8a8, w6a6)"
i=0
for hd in tests/fixtures/heads/*/; do
  name="$(basename "$hd")"
  bits=$([ $((i % 2)) = 0 ] && echo w8a8 || echo w6a6)
  i=$((i + 1))
  qemu_fixture "$hd" "$bits" "head-$name-$bits"
  echo "$name: NEON (dotprod and not) bit-exact at $bits, head codes and logits included"
done
