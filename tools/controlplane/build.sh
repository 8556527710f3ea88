#!/usr/bin/env bash
# Build (once per machine) or find the pinned control-plane binaries the tests and the demo use:
# kube-apiserver, kubectl, etcd, helm and llm-d-inference-sim (plus kube-controller-manager on
# request), from Go modules, with their real version stamped in. Versions: versions.env.
#
#   tools/controlplane/build.sh                    # the default set; progress on stderr
#   tools/controlplane/build.sh kube-apiserver etcd kube-controller-manager   # just these
#
# The last line of stdout is a directory holding (symlinks to) every requested binary, and an
# `env` file there (SWITCHBOARD_CP_BIN=..., one line per binary) for callers that prefer it.
#
# Per binary, in order of preference:
#   1. $KUBEBUILDER_ASSETS/<bin>, the envtest convention (used even when it reports another
#      version, with a warning; such a set gets its own directory);
#   2. ${SWITCHBOARD_CACHE:-~/.cache/switchboard}/bin/<bin>-<version>/<bin>, when the binary
#      reports the pinned version (a few seconds for the whole set);
#   3. a build from the wrapper module beside this script (go.mod + go.sum pin every module):
#      CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -mod=readonly, with version ldflags.
# GOMODCACHE and GOCACHE are Go's defaults, so they persist per machine as well.
# The body is one { ... } group, read whole before it runs: a checkout or edit of this file
# while a long build runs cannot change what the running build executes.
{
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}/bin"
k8s_minor="${KUBERNETES_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"

default_set=(kube-apiserver kubectl etcd helm llm-d-inference-sim)
if (($#)); then wanted=("$@"); else wanted=("${default_set[@]}"); fi

say() { echo "==> $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

mkdir -p "$cache"
# One build at a time per machine (parallel test sessions, the demo and `make test`).
exec 9>"$cache/.lock"
if ! flock -n 9; then
  say "waiting for another control-plane build on this machine (lock $cache/.lock)"
  flock 9
fi

k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
  k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  # Without these, `helm template`/`lint` assume Kubernetes v1.20 (chartutil/capabilities.go).
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

# spec BIN -> "version|wrapper dir|package|ldflags|rough cold cost"
spec() {
  case "$1" in
    kube-apiserver)
      echo "$KUBERNETES_VERSION|k8s|k8s.io/kubernetes/cmd/kube-apiserver|$k8s_ldflags|~10 min" ;;
    kubectl)
      echo "$KUBERNETES_VERSION|k8s|k8s.io/kubernetes/cmd/kubectl|$k8s_ldflags|~2 min" ;;
    kube-controller-manager)
      echo "$KUBERNETES_VERSION|k8s|k8s.io/kubernetes/cmd/kube-controller-manager|$k8s_ldflags|~2 min" ;;
    etcd)
      echo "$ETCD_VERSION|etcd|go.etcd.io/etcd/server/v3|-s -w|~1 min" ;;
    helm)
      # The k8s minor is compiled into helm, so it is part of helm's cache key.
      echo "$HELM_VERSION-k8s1.$k8s_minor|helm|helm.sh/helm/v3/cmd/helm|$helm_ldflags|~2 min" ;;
    llm-d-inference-sim)
      echo "$LLMD_SIM_VERSION|llmd-sim|github.com/llm-d/llm-d-inference-sim/cmd/llm-d-inference-sim|-s -w|~4 min" ;;
    *) die "unknown binary '$1' (known: ${default_set[*]} kube-controller-manager)" ;;
  esac
}

# reports BIN PATH VERSION: does the binary at PATH report VERSION?
reports() {
  local bin="$1" path="$2" version="$3" out
  [[ -x "$path" ]] || return 1
  case "$bin" in
    kube-apiserver | kube-controller-manager) out="$("$path" --version 2>&1)" || return 1 ;;
    kubectl) out="$("$path" version --client 2>&1)" || return 1 ;;
    etcd) out="$("$path" --version 2>&1)" || return 1; version="${version#v}" ;;
    helm) out="$("$path" version --short 2>&1)" || return 1; version="${version%%-k8s*}" ;;
    # The simulator has no --version flag; the Go build info names the module version.
    llm-d-inference-sim) out="$(go version -m "$path" 2>&1)" || return 1 ;;
  esac
  grep -qE -- "(^|[^0-9.])${version//./\\.}([^0-9.]|$)" <<<"$out"
}

set_dir="$cache/set-k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION-sim-$LLMD_SIM_VERSION"
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  # Binaries from $KUBEBUILDER_ASSETS get their own set directory: the shared one must keep
  # pointing at the pinned builds for every other caller on this machine.
  set_dir+="-assets-$(printf '%s' "$KUBEBUILDER_ASSETS" | sha256sum | cut -c1-12)"
fi
mkdir -p "$set_dir"
total_start=$SECONDS
for bin in "${wanted[@]}"; do
  IFS='|' read -r version dir pkg ldflags cost <<<"$(spec "$bin")"
  if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/$bin" ]]; then
    path="$KUBEBUILDER_ASSETS/$bin"
    if reports "$bin" "$path" "$version"; then
      say "$bin $version: using \$KUBEBUILDER_ASSETS/$bin"
    else
      say "$bin: using \$KUBEBUILDER_ASSETS/$bin as is (it does not report the pinned $version)"
    fi
  else
    path="$cache/$bin-$version/$bin"
    if reports "$bin" "$path" "$version"; then
      say "$bin $version: cached ($path)"
    else
      say "building $bin $version (first run only, $cost on 2 cores)"
      start=$SECONDS
      mkdir -p "$(dirname "$path")"
      if ! (cd "$here/$dir" && CGO_ENABLED=0 GOTOOLCHAIN=local \
        nice go build -trimpath -mod=readonly -ldflags "$ldflags" -o "$path.tmp.$$" "$pkg"); then
        rm -f "$path.tmp.$$"
        die "building $bin $version failed (wrapper module $here/$dir)"
      fi
      mv -f "$path.tmp.$$" "$path"
      reports "$bin" "$path" "$version" || die "$path does not report version $version"
      say "built $bin $version in $((SECONDS - start)) s"
    fi
  fi
  ln -sfn "$path" "$set_dir/$bin"
done
# The env file names every binary of the set, also those linked by earlier (partial) runs.
env_lines=("SWITCHBOARD_CP_BIN=$set_dir")
for link in "$set_dir"/*; do
  [[ -L "$link" ]] || continue
  env_lines+=("SWITCHBOARD_CP_$(basename "$link" | tr 'a-z-' 'A-Z_')=$(readlink "$link")")
done
printf '%s\n' "${env_lines[@]}" >"$set_dir/env.tmp.$$"
mv -f "$set_dir/env.tmp.$$" "$set_dir/env"
say "control-plane binaries ready in $set_dir ($((SECONDS - total_start)) s)"
echo "$set_dir"
exit 0
}
