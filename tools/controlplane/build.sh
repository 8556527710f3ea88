#!/usr/bin/env bash
# Build (once per machine) or find the pinned control-plane binaries the tests and the demo use:
# kube-apiserver, kubectl, etcd and helm, from Go modules, with their real version stamped in.
#
#   tools/controlplane/build.sh            # prints progress on stderr, the bin dir on stdout
#
# Order of preference per binary: $KUBEBUILDER_ASSETS/<bin> (the envtest convention), then the
# per-machine cache ${SWITCHBOARD_CACHE:-~/.cache/switchboard}/bin/<version>/<bin> when it reports
# the pinned version, else a build from the wrapper module beside this script (first run only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${SWITCHBOARD_CACHE:-$HOME/.cache/switchboard}/bin"
k8s_minor="${KUBERNETES_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
out_dir="$cache/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$out_dir"

say() { echo "==> $*" >&2; }

have() {  # have BIN EXPECTED-VERSION-SUBSTRING VERSION-ARGS...
  local bin="$1" want="$2"; shift 2
  if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/$bin" ]]; then
    ln -sf "$KUBEBUILDER_ASSETS/$bin" "$out_dir/$bin"
    return 0
  fi
  [[ -x "$out_dir/$bin" ]] && "$out_dir/$bin" "$@" 2>&1 | grep -q -- "$want"
}

gobuild() {  # gobuild MODULE-DIR PACKAGE OUTPUT LDFLAGS
  local dir="$1" pkg="$2" output="$3" ldflags="$4" start=$SECONDS
  (cd "$here/$dir" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    nice go build -trimpath -ldflags "$ldflags" -o "$output.tmp" "$pkg")
  mv "$output.tmp" "$output"
  say "built $(basename "$output") in $((SECONDS - start)) s"
}

k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
  k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

if ! have kube-apiserver "$KUBERNETES_VERSION" --version; then
  say "building kube-apiserver $KUBERNETES_VERSION (first run only: about 10 min on 2 cores)"
  gobuild k8s k8s.io/kubernetes/cmd/kube-apiserver "$out_dir/kube-apiserver" "-s -w $k8s_ldflags"
fi
if ! have kubectl "$KUBERNETES_VERSION" version --client; then
  say "building kubectl $KUBERNETES_VERSION (first run only: about 5 min)"
  gobuild k8s k8s.io/kubernetes/cmd/kubectl "$out_dir/kubectl" "-s -w $k8s_ldflags"
fi
if ! have etcd "${ETCD_VERSION#v}" --version; then
  say "building etcd $ETCD_VERSION (first run only: about 3 min)"
  gobuild etcd go.etcd.io/etcd/server/v3 "$out_dir/etcd" "-s -w"
fi
if ! have helm "$HELM_VERSION" version; then
  say "building helm $HELM_VERSION (first run only: about 3 min)"
  helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  gobuild helm helm.sh/helm/v3/cmd/helm "$out_dir/helm" "$helm_ldflags"
fi
say "control-plane binaries ready in $out_dir"
echo "$out_dir"
