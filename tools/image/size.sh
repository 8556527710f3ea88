#!/usr/bin/env bash
# Print an image's size in bytes (uncompressed, as the builder stores it), then a tab and MB.
#
#   tools/image/size.sh IMAGE
{
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
(($# == 1)) || die "usage: $0 IMAGE"
if [[ "$(image_builder)" == docker ]]; then
  bytes="$(docker image inspect --format '{{.Size}}' "$1")"
else
  bytes="$(buildah images --json "$1" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["size"])')"
fi
python3 -c 'import sys; b = int(sys.argv[1]); print(f"{b}\t{b / 1e6:.1f} MB")' "$bytes"
exit 0
}
