#!/usr/bin/env bash
# Make (once per machine) the offline base image: Debian bookworm minbase with Debian's python3
# and python3-venv, built by mmdebstrap from Debian's archive and imported into the
# buildah/podman storage as $BASE_REPO:$BASE_VERSION (tools/image/versions.env). For machines
# that cannot pull from an image registry; the Dockerfile takes it as BASE_IMAGE.
#
#   tools/image/base.sh          # progress on stderr; the image reference on stdout's last line
#
# Cache: ${SWITCHBOARD_CACHE:-~/.cache/switchboard}/image/base-$BASE_VERSION.tar (the root file
# system), imported again if the image has gone from the storage. DEBIAN_MIRROR overrides
# http://deb.debian.org (the security archive is taken from the same host).
{
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=versions.env
source "$here/versions.env"
ref="$BASE_REPO:$BASE_VERSION"
tarball="$image_cache/base-$BASE_VERSION.tar"

mkdir -p "$image_cache"
exec 8>"$image_cache/.base.lock"
if ! flock -n 8; then
  say "waiting for another base build on this machine (lock $image_cache/.base.lock)"
  flock 8
fi

ensure_packages buildah:buildah
if buildah inspect --type image "$ref" >/dev/null 2>&1; then
  echo "$ref"
  exit 0
fi

if [[ ! -s "$tarball" ]]; then
  ensure_packages mmdebstrap:mmdebstrap
  mirror="${DEBIAN_MIRROR:-http://deb.debian.org}"
  say "making the base root file system with mmdebstrap ($BASE_SUITE: $BASE_PACKAGES; once per machine)"
  hooks=()
  # merged /usr made by a hook, not by the usrmerge package (which brings perl, ~40 MB).
  merged=/usr/share/mmdebstrap/hooks/merged-usr
  [[ -d "$merged" ]] && hooks=(--hook-dir="$merged")
  run_logged "$image_cache/base-$BASE_VERSION.log" mmdebstrap --variant=minbase --format=tar \
    "${hooks[@]}" \
    --include="$BASE_PACKAGES" \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$BASE_SUITE" "$tarball.tmp" \
    "deb $mirror/debian $BASE_SUITE main" \
    "deb $mirror/debian $BASE_SUITE-updates main" \
    "deb $mirror/debian-security $BASE_SUITE-security main"
  mv "$tarball.tmp" "$tarball"
fi

say "importing the base into the image storage as $ref"
ctr="$(buildah from scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
run_logged "$image_cache/base-import.log" buildah add "$ctr" "$tarball" /
run_logged "$image_cache/base-import.log" buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd /bin/bash \
  --label "dev.switchboard.base=$BASE_VERSION" "$ctr"
run_logged "$image_cache/base-import.log" buildah commit --rm "$ctr" "$ref"
trap - EXIT
echo "$ref"
exit 0
}
