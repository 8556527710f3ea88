#!/usr/bin/env bash
# Build the image users deploy (the repository's Dockerfile), tagged with the package version:
# ${SWITCHBOARD_IMAGE_REPO:-ghcr.io/switchboard-dev/switchboard}:<switchboard.__version__>, the
# chart's default image reference. `make image` runs this.
#
#   tools/image/build.sh        # one progress line per step on stderr; the reference on stdout
#   tools/image/build.sh --ref  # only print the reference it tags
#
# Builder: docker when its engine answers, else podman when installed, else buildah (installed
# from Debian's packages when missing); SWITCHBOARD_IMAGE_BUILDER=docker|podman|buildah chooses.
# Base: docker builds FROM the Dockerfile's default (the official python:3.11-slim-bookworm);
# podman and buildah build FROM the offline base of tools/image/base.sh (Debian's python3 on
# bookworm, made once per machine), as no image registry may be reachable.
# SWITCHBOARD_IMAGE_BASE=<image> chooses the base for any builder.
#
# Up to date: the image carries the label dev.switchboard.inputs, a hash of the files the build
# reads (the Dockerfile, .dockerignore and the allowed context) and of the base; when the image
# under the tag has the same hash, nothing is built (well under a second).
#
# pip inside the build uses this machine's settings: PIP_INDEX_URL and PIP_EXTRA_INDEX_URL (the
# environment or `pip config`) and the proxy variables become build arguments; the CA bundle of
# PIP_CERT (or pip's `global.cert`) a build secret (id pip_cert), kept out of the layers.
{
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/operator/switchboard/__init__.py")"
[[ -n "$version" ]] || die "no __version__ = \"...\" line in operator/switchboard/__init__.py"
ref="${SWITCHBOARD_IMAGE_REPO:-ghcr.io/switchboard-dev/switchboard}:$version"
if [[ "${1:-}" == --ref ]]; then
  echo "$ref"
  exit 0
fi
builder="$(image_builder)"
case "$builder" in
  docker) ;;
  podman) ensure_packages buildah:buildah ;; # the smoke tier runs podman's images with buildah
  buildah) ensure_packages buildah:buildah ;;
  *) die "SWITCHBOARD_IMAGE_BUILDER=$builder: use docker, podman or buildah" ;;
esac

# One build at a time per machine (worktrees, the tier's fixture, make image).
mkdir -p "$image_cache"
exec 7>"$image_cache/.build.lock"
if ! flock -n 7; then
  say "waiting for another image build on this machine (lock $image_cache/.build.lock)"
  flock 7
fi

base="${SWITCHBOARD_IMAGE_BASE:-}"
if [[ -z "$base" && "$builder" != docker ]]; then
  base="$(bash "$here/base.sh" | tail -n 1)"
fi

# The hash of what the build reads: keep the file list in step with .dockerignore.
inputs="$(
  cd "$root"
  {
    echo "base=$base builder=$builder"
    find Dockerfile .dockerignore pyproject.toml README.md operator -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-20
)"

# label: the inputs hash of the image now under the tag (empty if none).
label() {
  case "$builder" in
    docker)
      docker image inspect --format '{{index .Config.Labels "dev.switchboard.inputs"}}' \
        "$ref" 2>/dev/null ;;
    *)
      buildah inspect --type image \
        --format '{{index .OCIv1.Config.Labels "dev.switchboard.inputs"}}' "$ref" 2>/dev/null ;;
  esac
}
if [[ "$(label || true)" == "$inputs" ]]; then
  say "image $ref is up to date (inputs $inputs)"
  echo "$ref"
  exit 0
fi

args=(--file "$root/Dockerfile" --tag "$ref" --label "dev.switchboard.inputs=$inputs")
[[ -n "$base" ]] && args+=(--build-arg "BASE_IMAGE=$base")
pip_conf() { python3 -m pip config get "$1" 2>/dev/null || true; }
index="${PIP_INDEX_URL:-$(pip_conf global.index-url)}"
extra="${PIP_EXTRA_INDEX_URL:-$(pip_conf global.extra-index-url)}"
cert="${PIP_CERT:-$(pip_conf global.cert)}"
[[ -n "$index" ]] && args+=(--build-arg "PIP_INDEX_URL=$index")
[[ -n "$extra" ]] && args+=(--build-arg "PIP_EXTRA_INDEX_URL=$extra")
[[ -n "$cert" && -s "$cert" ]] && args+=(--secret "id=pip_cert,src=$cert")
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
  [[ -n "${!var:-}" ]] && args+=(--build-arg "$var=${!var}")
done

# prune_stale_layers LOG: remove the intermediate images (the layer cache) of earlier builds of
# this script that the build in LOG did not use, and that nothing else uses (dangling), so that
# the storage does not grow with each source change. Images this script did not make are kept.
prune_stale_layers() {
  local ours="$image_cache/layers" now removed=1 id
  now="$(sed -nE 's/^--> (Using cache )?([0-9a-f]{11}).*/\2/p' "$1" | sort -u)"
  { [[ -f "$ours" ]] && cat "$ours"; echo "$now"; } | sort -u >"$ours.tmp"
  mv "$ours.tmp" "$ours"
  while ((removed)); do
    removed=0
    while read -r id; do
      id="${id#sha256:}"
      grep -qx "${id:0:11}" "$ours" || continue
      grep -qx "${id:0:11}" <<<"$now" && continue
      "$builder" rmi "$id" >/dev/null 2>&1 && removed=1
    done < <("$builder" images --filter dangling=true --quiet --no-trunc)
  done
}

mkdir -p "$image_cache"
log="$image_cache/build.log"
say "building $ref with $builder${base:+ from $base} (log: $log)"
started=$SECONDS
case "$builder" in
  docker) run_logged "$log" env DOCKER_BUILDKIT=1 docker build "${args[@]}" "$root" ;;
  podman) run_logged "$log" podman build --isolation chroot --layers --force-rm "${args[@]}" "$root" ;;
  buildah) run_logged "$log" buildah bud --isolation chroot --layers --force-rm "${args[@]}" "$root" ;;
esac
say "built $ref in $((SECONDS - started)) s"
[[ "$builder" == docker ]] || prune_stale_layers "$log"
echo "$ref"
exit 0
}
