#!/usr/bin/env bash
# Benchmark tools, installed once per machine (idempotent; `make bench` runs it every time):
# wrk from Debian's packages, and the LiteLLM proxy at a pinned release in its own venv under
# .cache/bench-litellm (reinstalled when the pin changes). The Go stream load generator
# (bench/streamgen) is built by run.py into .cache/ when a Go toolchain is there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "==> installing wrk (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
LITELLM_VERSION=1.80.0   # 1.109.x needs a certifi release newer than the registry serves here
VENV=.cache/bench-litellm
if [ "$(cat "$VENV/.version" 2>/dev/null)" != "$LITELLM_VERSION" ] || [ ! -x "$VENV/bin/litellm" ]; then
  echo "==> installing litellm[proxy]==$LITELLM_VERSION into $VENV (once)" >&2
  python3 -m venv "$VENV"
  if "$VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"; then
    echo "$LITELLM_VERSION" > "$VENV/.version"
  else
    echo "==> LiteLLM could not be installed; the benchmark will skip it" >&2
  fi
fi
