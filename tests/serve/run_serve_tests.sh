#!/usr/bin/env bash
# run_serve_tests.sh BUILD_DIR — the Python side of the `etx serve` tests (ctest: test_serve).
#
# Creates (or reuses) a virtual environment in BUILD_DIR/serve-venv with the pinned packages
# of tests/serve/requirements.txt (openai, lm-eval[api], pytest and their dependencies),
# then runs tests/serve/test_openai_client.py, test_lm_eval.py and test_emulated_cuda.py
# (BUILD_DIR/etx_emu --device cuda, when the build has it) with pytest
# against BUILD_DIR/etx and the default model ($ETX_MODEL, else
# models/cache/SmolLM2-135M-Instruct.Q4_1.gguf).
#
# Exit status: pytest's (0 passed, 1 failed), or 77 (ctest: skipped) with a "SKIP:" line
# when the tests cannot run here: no `etx serve` in this build, no model, no Python >= 3.10
# with venv, or PyPI not reachable for the first install. The venv is reused while
# requirements.txt is unchanged (its sha256 is kept in serve-venv/.requirements.sha256).
#
# Environment passed on to the tests: ETX_MODEL, ETX_SERVE_THREADS (default 2),
# ETX_SERVE_DEVICE (default cpu); PYTEST_ADDOPTS for extra pytest options (-k NAME, -x).
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$(cd "$1" && pwd)" || { echo "run_serve_tests.sh: no build directory $1" >&2; exit 2; }
etx="$build/etx"
venv="$build/serve-venv"
req="$here/requirements.txt"

skip() { echo "SKIP: test_serve: $*"; exit 77; }

[ -x "$etx" ] || { echo "run_serve_tests.sh: no etx binary at $etx" >&2; exit 1; }
if ! "$etx" serve --help >/dev/null 2>&1; then
  skip "$etx has no 'serve' subcommand (etx serve --help failed)"
fi
model="${ETX_MODEL:-$root/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -e "$model" ] || skip "no model at $model (run models/fetch_default_model.sh, or set ETX_MODEL)"

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || skip "no $python"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
  skip "$python is older than 3.10 (lm-eval needs 3.10+)"

want="$(sha256sum "$req" | cut -d' ' -f1)"
have="$(cat "$venv/.requirements.sha256" 2>/dev/null || true)"
if [ "$want" != "$have" ] || [ ! -x "$venv/bin/python" ]; then
  echo "test_serve: installing tests/serve/requirements.txt into $venv ..."
  rm -rf "$venv"
  if ! "$python" -m venv "$venv" >"$build/serve-venv.log" 2>&1; then
    cat "$build/serve-venv.log"
    rm -rf "$venv"
    skip "$python -m venv failed (Debian: apt-get install python3-venv)"
  fi
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$req" \
      >>"$build/serve-venv.log" 2>&1; then
    if grep -qE "Retrying \(Retry\(|NewConnectionError|Network is unreachable|Temporary failure in name resolution|Name or service not known|ConnectTimeout|ConnectionError|ProxyError|No route to host|Failed to establish a new connection" "$build/serve-venv.log"; then
      tail -5 "$build/serve-venv.log"
      rm -rf "$venv"
      skip "pip cannot reach the package index to install tests/serve/requirements.txt (log: $build/serve-venv.log)"
    fi
    tail -40 "$build/serve-venv.log"
    rm -rf "$venv"
    echo "run_serve_tests.sh: pip install -r tests/serve/requirements.txt failed (log: $build/serve-venv.log)" >&2
    exit 1
  fi
  echo "$want" >"$venv/.requirements.sha256"
fi

export ETX_BIN="$etx" ETX_MODEL="$model"
# the CUDA backend under the SIMT emulator, where the build has it (test_emulated_cuda.py)
[ -x "$build/etx_emu" ] && export ETX_EMU_BIN="$build/etx_emu"
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_EVALUATE_OFFLINE=1
export PYTHONDONTWRITEBYTECODE=1
cd "$here" || exit 1
start=$(date +%s)
"$venv/bin/python" -m pytest -p no:cacheprovider -v -rfE --durations=0 \
  --basetemp="$build/serve-tests-tmp" test_openai_client.py test_lm_eval.py test_emulated_cuda.py
rc=$?
echo "test_serve: pytest exit $rc after $(( $(date +%s) - start )) s"
exit $rc
