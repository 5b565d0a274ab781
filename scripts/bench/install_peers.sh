#!/usr/bin/env bash
# Install the peers scripts/bench/peers.py compares the router with, into their OWN virtualenv
# (never the project's: LiteLLM alone pulls ~800 MB of dependencies).
#
#   scripts/bench/install_peers.sh [VENV]        # default: $PEERS_VENV or /work/peers-venv
#
# nginx and wrk are system packages (Debian: apt-get install nginx wrk); redis-server too.
# The benchmark finds the peers with --peers-venv VENV (or --sglang-router-bin / --litellm-bin,
# or SGLANG_ROUTER_BIN / LITELLM_BIN) and skips, with a message, any it cannot find.
set -euo pipefail
venv="${1:-${PEERS_VENV:-/work/peers-venv}}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q sglang-router 'litellm[proxy]'
"$venv/bin/python" - <<'PY'
import importlib.metadata as m
for dist in ("sglang-router", "litellm"):
    print(f"{dist} {m.version(dist)}")
PY
for tool in nginx wrk redis-server; do
  command -v "$tool" >/dev/null 2>&1 || echo "missing system package: $tool (apt-get install $tool)"
done
