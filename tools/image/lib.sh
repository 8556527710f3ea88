# Shared by tools/image/*.sh: progress lines, errors, package installs, the builder in use.
# shellcheck shell=bash

say() { echo "==> $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

image_cache="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}/image"

# run LOG CMD...: run CMD quietly into LOG; on failure print LOG's tail and stop.
run_logged() {
  local log="$1"
  shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "'$*' failed (full log: $log)"
  fi
}

# ensure_packages CMD:PACKAGE...: apt-get install the Debian packages whose command is missing.
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null 2>&1 ||
    die "missing ${missing[*]}: install them with your package manager (apt-get is not here)"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}: install them as root"
    sudo=(sudo)
  fi
  mkdir -p "$image_cache"
  say "installing Debian packages: ${missing[*]} (once per machine)"
  run_logged "$image_cache/apt.log" "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
  run_logged "$image_cache/apt.log" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}

# The builder: SWITCHBOARD_IMAGE_BUILDER if set; else docker when its engine answers; else
# podman when installed; else buildah (installed when missing).
image_builder() {
  if [[ -n "${SWITCHBOARD_IMAGE_BUILDER:-}" ]]; then
    echo "$SWITCHBOARD_IMAGE_BUILDER"
  elif command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null 2>&1; then
    echo podman
  else
    echo buildah
  fi
}
