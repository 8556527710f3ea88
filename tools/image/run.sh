#!/usr/bin/env bash
# Run a command in the image the way the chart runs it: as the image's user (65532), with a
# read-only root file system, a writable scratch /tmp, the host's network (so a loopback port is
# reachable from the host) and read-only mounts of host paths.
#
#   tools/image/run.sh [--mount SRC:DST]... [--entrypoint CMD] IMAGE [ARG...]
#
# With a docker engine: `docker run --read-only --tmpfs /tmp --user <image's> --network host
# --cap-drop ALL --security-opt no-new-privileges`. Without one (podman run is refused on some
# sandboxes: crun's setrlimit): the image's root file system through `buildah from` + `buildah
# mount`, entered by `unshare --mount` (needs root) which bind-mounts it read-only over itself,
# mounts a tmpfs on /tmp and /dev/shm, the host's /proc, a /dev with null, zero, full, random,
# urandom and tty, the host's /etc/resolv.conf and /etc/hosts, the --mount paths read-only,
# then chroots and drops to the image's uid/gid (all capabilities go with uid 0) before it
# executes the image's entry point with the image's environment and working directory.
# SIGTERM and SIGINT reach the command; the container is removed when it exits.
{
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$here/lib.sh"

mounts=()
entrypoint=""
while (($#)); do
  case "$1" in
    --mount) mounts+=("$2"); shift 2 ;;
    --entrypoint) entrypoint="$2"; shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (see the head of $0)" ;;
    *) break ;;
  esac
done
(($#)) || die "usage: $0 [--mount SRC:DST]... [--entrypoint CMD] IMAGE [ARG...]"
image="$1"
shift

child=""
forward() { [[ -n "$child" ]] && kill -s "$1" "$child" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT
# wait_child: wait for the command through forwarded signals; its status becomes ours.
wait_child() {
  local status
  while true; do
    wait "$child" && status=0 || status=$?
    kill -0 "$child" 2>/dev/null || return "$status"
  done
}

builder="$(image_builder)"
if [[ "$builder" == docker ]]; then
  user="$(docker image inspect --format '{{.Config.User}}' "$image")"
  args=(--rm --read-only --tmpfs /tmp:rw,mode=1777 --network host --cap-drop ALL
    --security-opt no-new-privileges --user "${user:-65532}")
  for m in "${mounts[@]}"; do args+=(--volume "$m:ro"); done
  [[ -n "$entrypoint" ]] && args+=(--entrypoint "$entrypoint")
  docker run "${args[@]}" "$image" "$@" &
  child=$!
  wait_child
  exit $?
fi

((EUID == 0)) || die "running an image without a docker engine needs root (unshare --mount)"
ensure_packages buildah:buildah
ctr="$(buildah from --pull-never "$image")"
cleanup() {
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rootfs="$(buildah mount "$ctr")"

# The image's configuration: user, environment, entry point + command, working directory.
config="$(buildah inspect --type image "$image")"
mapfile -d '' -t spec < <(python3 - "$config" "$entrypoint" "$@" <<'PY'
import json, sys
config, entrypoint, args = json.loads(sys.argv[1])["OCIv1"]["config"], sys.argv[2], sys.argv[3:]
user = (config.get("User") or "0:0").split(":")
if not all(part.isdigit() for part in user):
    sys.exit(f"image user {config.get('User')!r} is not numeric (uid:gid)")
fields = [user[0], user[1] if len(user) > 1 else user[0], config.get("WorkingDir") or "/"]
env = config.get("Env") or []
command = ([entrypoint] if entrypoint else config.get("Entrypoint") or []) + (
    args or ([] if entrypoint else config.get("Cmd") or [])
)
sys.stdout.write("".join(f"{field}\0" for field in [*fields, str(len(env)), *env, *command]))
PY
)
((${#spec[@]} >= 4)) || die "cannot read the configuration of image $image"
uid="${spec[0]}" gid="${spec[1]}" workdir="${spec[2]}" nenv="${spec[3]}"
env_vars=("${spec[@]:4:$nenv}")
command=("${spec[@]:$((4 + nenv))}")

# Inside a new mount namespace (gone when the command exits): the mounts, then exec.
unshare --mount --propagation private -- bash -euo pipefail -c '
  r="$1" mounts="$2"; shift 2
  mount --bind "$r" "$r"
  mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$r/tmp"
  mount --rbind /proc "$r/proc"
  mount -t tmpfs -o nosuid,mode=755,size=64k tmpfs "$r/dev"
  for d in null zero full random urandom tty; do
    touch "$r/dev/$d" && mount --bind "/dev/$d" "$r/dev/$d"
  done
  mkdir "$r/dev/shm" && mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$r/dev/shm"
  ln -s /proc/self/fd "$r/dev/fd"
  for f in stdin:0 stdout:1 stderr:2; do ln -s "/proc/self/fd/${f#*:}" "$r/dev/${f%%:*}"; done
  for f in /etc/resolv.conf /etc/hosts; do
    [[ -f "$r$f" ]] && mount --bind -o ro "$f" "$r$f"
  done
  while IFS= read -r m; do
    [[ -n "$m" ]] || continue
    src="${m%%:*}" dst="${m#*:}"
    if [[ -d "$src" ]]; then mkdir -p "$r$dst"; else mkdir -p "$(dirname "$r$dst")"; touch "$r$dst"; fi
    mount --bind "$src" "$r$dst"
    mount -o remount,bind,ro "$r$dst"
  done <<<"$mounts"
  mount -o remount,bind,ro "$r"
  exec "$@"
' run "$rootfs" "$(printf '%s\n' "${mounts[@]}")" \
  /usr/bin/env -i "${env_vars[@]}" "$(command -v unshare)" --root="$rootfs" --wd="$workdir" \
  --setgid="$gid" --setuid="$uid" -- "${command[@]}" &
child=$!
wait_child
exit $?
}
