#!/usr/bin/env bash
# Print an image's size (uncompressed, as the builder stores it: all layers, base included).
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
  python3 -c 'import sys; print(f"{int(sys.argv[1]) / 1e6:.0f} MB")' "$bytes"
else
  buildah images --format '{{.Size}}' "$1"
fi
exit 0
}
