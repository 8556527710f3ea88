#!/usr/bin/env bash
# Benchmark tools, installed once per machine: wrk (Debian) and the LiteLLM proxy in its own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "==> installing wrk (apt-get)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
LITELLM_VERSION=1.80.0   # 1.109.x needs a certifi release newer than the registry serves here
if [ ! -x .cache/bench-litellm/bin/litellm ]; then
  echo "==> installing litellm[proxy]==$LITELLM_VERSION into .cache/bench-litellm (once)" >&2
  python3 -m venv .cache/bench-litellm
  .cache/bench-litellm/bin/pip install -q "litellm[proxy]==$LITELLM_VERSION" \
    || echo "==> LiteLLM could not be installed; the benchmark will skip it" >&2
fi
