#!/usr/bin/env bash
# From a fresh clone to generated text: installs what is missing, builds etx (release),
# fetches the default model (SmolLM2-135M-Instruct) and generates with the entropix
# policy; --stats prints, among its lines, the branch mix (how many tokens each branch
# of the policy chose). Arguments: the chat message, the number of tokens.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/install_deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$root/build" -j"$(nproc)" --target etx
"$root/models/fetch_default_model.sh"
"$root/build/etx" generate --chat "${1:-Write a haiku about the sea.}" -n "${2:-96}" --policy entropix --stats
echo "(the 'branches' line: the tokens each entropix branch chose; docs/entropix.md §2 explains them)"
