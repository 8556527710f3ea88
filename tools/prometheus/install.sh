#!/usr/bin/env bash
# Debian's prometheus package (prometheus + promtool) for the observability tests, installed once
# per machine when missing. Only the binaries are used: the tests start their own server on a free
# loopback port. The package's system service is kept from starting during the install (a
# policy-rc.d that denies service starts, put there only for the install if none exists).
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
echo "==> installing Debian's prometheus package (prometheus, promtool; service not started)" >&2
sudo=""
[[ "$(id -u)" == 0 ]] || sudo="sudo"
policy=/usr/sbin/policy-rc.d
placed=""
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  placed=1
fi
cleanup() { [[ -z "$placed" ]] || $sudo rm -f "$policy"; }
trap cleanup EXIT
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null
