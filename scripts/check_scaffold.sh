#!/usr/bin/env bash
# The plugin author's walk, for real, in a fresh virtual environment:
#   hybridzoo new-plugin NAME --dir NAME; pip install -e NAME; hybridzoo layers / plugins;
#   hybridzoo check-plugin NAME; the generated pytest; a hybrid mixing NAME with builtins.
# Too slow for every test run (it installs torch and hybridzoo into a new venv); run it by hand:
#   bash scripts/check_scaffold.sh [WORKDIR]
# Environment: PYTHON (interpreter for the venv, default python3), NAME (default mylayer),
# TORCH_SPEC (default torch==2.13.0, as .ci/run), PATTERN (default "M {symbol} A").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d -t hybridzoo-scaffold-XXXXXX)}"
PYTHON="${PYTHON:-python3}"
NAME="${NAME:-mylayer}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ -z "${PATTERN:-}" ]; then PATTERN="M {symbol} A"; fi
mkdir -p "$WORK"
cd "$WORK"
step() { printf '\n== %s\n' "$*"; }

step "fresh virtual environment in $WORK/venv ($("$PYTHON" --version))"
"$PYTHON" -m venv venv
VPY="$WORK/venv/bin/python"
HZ="$WORK/venv/bin/hybridzoo"
"$VPY" -m pip install -q "$TORCH_SPEC"
"$VPY" -m pip install -q -e "$REPO[test]"
"$VPY" -m pip list 2>/dev/null | grep -i -E '^(torch|hybridzoo|pluggy|attrs|pytest) '

step "hybridzoo new-plugin $NAME --dir $NAME"
"$HZ" new-plugin "$NAME" --dir "$NAME"

step "pip install -e ./$NAME[test]"
"$VPY" -m pip install -q -e "./$NAME[test]"

step "hybridzoo layers (the new layer is listed)"
"$HZ" layers | tee layers.txt | grep -E "^[A-Za-z]  $NAME "

step "hybridzoo plugins"
"$HZ" plugins

step "hybridzoo check-plugin $NAME"
"$HZ" check-plugin "$NAME"

step "pytest in $NAME/"
(cd "$NAME" && "$VPY" -m pytest -q -p no:cacheprovider)

step "a hybrid mixing $NAME with builtins"
"$VPY" - "$NAME" "$PATTERN" <<'PY'
import sys

import torch

import hybridzoo

name, pattern = sys.argv[1], sys.argv[2]
spec = hybridzoo.get_layer(name)
pattern = pattern.replace("{symbol}", spec.symbol)
print(hybridzoo.visualize(pattern))
model = hybridzoo.build(pattern, embed_dim=16, hidden_size=64, dropout=0.0, output="sequence")
model = model.double().eval()
x = torch.randn(2, 7, 16, dtype=torch.float64)
with torch.no_grad():
    full = model(x)
    state = model.init_state(2)
    steps = torch.stack([model.step(x[:, t], state)[0] for t in range(7)], dim=1)
err = (steps - full).abs().max().item()
count = hybridzoo.param_count(pattern, embed_dim=16, hidden_size=64)
print(f"built {pattern!r}: {model.param_count():,} parameters (param_count: {count:,}); "
      f"max |step - forward| = {err:.2e}")
assert count == model.param_count() and err < 1e-9
PY

step "OK: the plugin author's walk passed (work dir: $WORK)"
