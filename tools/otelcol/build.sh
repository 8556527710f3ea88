#!/usr/bin/env bash
# Build (once per machine) or find the pinned OpenTelemetry Collector the observability tests send
# traces to: an OTLP receiver and the file exporter (main.go beside this file), from the Go modules
# pinned in go.mod + go.sum, like tools/controlplane/build.sh builds kube-apiserver.
#
#   tools/otelcol/build.sh      # one progress line on stderr; the binary's path on stdout
#
# Cache: ${SWITCHBOARD_CACHE:-~/.cache/switchboard}/bin/otelcol-switchboard-<version>-<source
# hash>/, reused while the binary reports the pinned version. GOMODCACHE and GOCACHE are Go's defaults.
# The body is one { ... } group, read whole before it runs.
{
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The collector release every module in go.mod is pinned to (contrib's file exporter v0.161.0).
OTELCOL_VERSION=v0.161.0
cache="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}/bin"
# The source is part of the key: an edit of main.go or go.sum builds a new binary.
source_hash="$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
path="$cache/otelcol-switchboard-$OTELCOL_VERSION-$source_hash/otelcol-switchboard"
mkdir -p "$cache"
exec 9>"$cache/.otelcol.lock"
flock 9
reports() { [[ -x "$path" ]] && "$path" --version 2>&1 | grep -qF -- "$OTELCOL_VERSION"; }
if reports; then
  echo "==> otelcol-switchboard $OTELCOL_VERSION: cached ($path)" >&2
else
  echo "==> building otelcol-switchboard $OTELCOL_VERSION (first run only, ~5 min on 2 cores)" >&2
  mkdir -p "$(dirname "$path")"
  if ! (cd "$here" && CGO_ENABLED=0 GOTOOLCHAIN=local nice go build -trimpath -mod=readonly \
    -ldflags "-s -w -X main.version=$OTELCOL_VERSION" -o "$path.tmp.$$" .); then
    rm -f "$path.tmp.$$"
    echo "error: building otelcol-switchboard failed (module $here)" >&2
    exit 1
  fi
  mv -f "$path.tmp.$$" "$path"
  reports || { echo "error: $path does not report $OTELCOL_VERSION" >&2; exit 1; }
fi
echo "$path"
exit 0
}
