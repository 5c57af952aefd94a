#!/usr/bin/env bash
# Installs the Debian packages etx builds against, when they are missing: CMake, a C
# compiler, pkg-config, PCRE2 (tokenizer regex), cJSON (JSON), OpenBLAS (CPU GEMMs),
# Check (tests), Open MPI (etx eval under mpirun), libmicrohttpd (etx serve), clang with libFuzzer (the fuzz pass).
# Runs apt-get as root (directly, or through sudo when available).
set -euo pipefail
pkgs=(cmake gcc make pkg-config libpcre2-dev libcjson-dev check libopenblas-dev libopenmpi-dev openmpi-bin)
# `etx serve`'s HTTP layer
pkgs+=(libmicrohttpd-dev)
# the fuzz pass of scripts/test.sh (tests/fuzz): clang, its libFuzzer and sanitizer
# runtimes (libclang-rt-14-dev) and its OpenMP (libomp-14-dev); Debian bookworm names
pkgs+=(clang libclang-rt-14-dev libomp-14-dev)
todo=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || todo+=("$p")
done
# python3 with pip fetches the default model; it may come from elsewhere (pyenv)
python3 -m pip --version >/dev/null 2>&1 || todo+=(python3 python3-pip)
# numpy: scripts/train_policy.py and its loop test (tests/scripts/test_train_loop.sh)
python3 -c "import numpy" >/dev/null 2>&1 || todo+=(python3-numpy)
if [ ${#todo[@]} -eq 0 ]; then
  echo "build dependencies present"
  exit 0
fi
echo "installing: ${todo[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${todo[@]}"
# Debian's python3-numpy serves /usr/bin/python3 only: a python3 first on PATH from
# elsewhere (pyenv) still lacks it, and gets it from PyPI
if ! python3 -c "import numpy" >/dev/null 2>&1; then
  echo "installing numpy for $(command -v python3) from PyPI"
  python3 -m pip install -q numpy
fi
