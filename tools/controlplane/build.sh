#!/usr/bin/env bash
# Build the test Kubernetes control plane from Go modules: kube-apiserver, kube-controller-manager and kubectl
# (Kubernetes $K8S_VERSION), etcd ($ETCD_VERSION), plus Istio's CRDs from the istio.io/api module.
#
# Everything lands in a fixed folder outside the checkout ($SOPHIA_CONTROLPLANE_DIR, default
# ~/.cache/sophia/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION) and a finished build is reused: the second call
# returns at once. The Go module and build caches are fixed folders too, so a rebuild after a clean clone only
# links. Nothing built here is committed.
#
# Why a wrapper module: k8s.io/kubernetes cannot be `go install`ed, because its go.mod points every staging module
# (k8s.io/api, k8s.io/client-go, ...) at ./staging with version v0.0.0. Our wrapper requires k8s.io/kubernetes and
# replaces each staging module with its published twin (k8s.io/api => k8s.io/api v0.36.x). The list is generated
# from the downloaded go.mod, never typed by hand.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
ISTIO_API_VERSION=${ISTIO_API_VERSION:-v1.30.8}

CACHE=${SOPHIA_CACHE_DIR:-$HOME/.cache/sophia}
OUT=${SOPHIA_CONTROLPLANE_DIR:-$CACHE/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION}
export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}
export GOCACHE=${GOCACHE_OVERRIDE:-$CACHE/go/build}
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
export CGO_ENABLED=0

if [ -f "$OUT/.complete" ]; then
  echo "control plane ready: $OUT"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: Go is not installed; it is needed to build the test control plane" >&2; exit 1; }

mkdir -p "$OUT/bin" "$OUT/crds"
work=$(mktemp -d "$CACHE/controlplane/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

# --- Kubernetes ---------------------------------------------------------------------------------------------------
staging=${K8S_VERSION/v1./v0.}  # k8s.io/api v0.36.3 is the twin of k8s.io/kubernetes v1.36.3
mkdir -p "$work/k8s"
cd "$work/k8s"
kube_mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
{
  echo "module sophia.test/controlplane"
  echo
  echo "go $(sed -n 's/^go //p' "$kube_mod")"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  sed -n 's|^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*|\t\1 => \1 '"$staging"'|p' "$kube_mod"
  echo ")"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo ")"
} >go.mod
echo "wrapper module replaces $(grep -c ' => k8s.io/' go.mod) staging modules with their $staging twins"
go mod tidy

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
# client-go's copy of the version (kubectl prints it)
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
for cmd in kube-apiserver kube-controller-manager kubectl; do
  echo "building $cmd $K8S_VERSION"
  go build -trimpath -ldflags "$ldflags" -o "$OUT/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done

# --- etcd ---------------------------------------------------------------------------------------------------------
mkdir -p "$work/etcd"
cd "$work/etcd"
etcd_mod=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
{
  echo "module sophia.test/etcd"
  echo
  echo "go $(sed -n 's/^go //p' "$etcd_mod")"
  echo
  echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo
  # etcd's own replace directives point its sibling modules at ../; pin the published ones instead
  echo "replace ("
  sed -n 's|^\s*\(go.etcd.io/etcd/[a-z0-9/]*\) => \.\./.*|\t\1 => \1 '"$ETCD_VERSION"'|p' "$etcd_mod"
  echo ")"
  echo
  echo "tool go.etcd.io/etcd/server/v3"
} >go.mod
go mod tidy
echo "building etcd $ETCD_VERSION"
go build -trimpath -ldflags "-s -w" -o "$OUT/bin/etcd" go.etcd.io/etcd/server/v3

# --- Istio CRDs ---------------------------------------------------------------------------------------------------
istio_dir=$(go mod download -json "istio.io/api@$ISTIO_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
cp "$istio_dir/kubernetes/customresourcedefinitions.gen.yaml" "$OUT/crds/istio.yaml"
chmod 0644 "$OUT/crds/istio.yaml"

"$OUT/bin/kube-apiserver" --version
"$OUT/bin/etcd" --version | head -n1
printf 'k8s=%s etcd=%s istio_api=%s built_in_s=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$ISTIO_API_VERSION" \
  "$(($(date +%s) - started))" >"$OUT/.complete"
echo "control plane ready: $OUT ($(cat "$OUT/.complete"))"
