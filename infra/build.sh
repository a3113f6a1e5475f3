#!/usr/bin/env bash
# Builds (once) the real components the tests and `llmtwin up` run against, into a cache outside
# the clone so fresh clones on the same machine reuse them:
#   $LLMTWIN_CACHE/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,minio,rollouts-controller,kwok}
#   $LLMTWIN_CACHE/kafka-<v>/libs/*.jar
#   $LLMTWIN_CACHE/crds/{argo-workflows,argo-rollouts,prometheus-operator,argo-cd,knative-serving}/*.yaml
#   $LLMTWIN_CACHE/kwok-stages/*.yaml
# Usage: infra/build.sh [all|debian|kubernetes|crds|kafka|minio|rollouts|kwok|oci_base]...   (default: all)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

CACHE="${LLMTWIN_CACHE:-$HOME/.cache/llmtwin}"
BIN="$CACHE/bin"
export GOTOOLCHAIN=local
export GOMODCACHE="${GOMODCACHE:-$CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$CACHE/go/build}"
export GOFLAGS="-mod=mod"
# Two cores: leave one for whatever else runs (tests, the other builds).
GO_PARALLEL="${LLMTWIN_GO_PARALLEL:-1}"
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"

log() { printf '[infra] %s\n' "$*" >&2; }
# The folder of a Go module version in the module cache (downloaded if needed).
module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
# `go install module/cmd@version` into the cache's bin (for modules without replace directives).
go_install() { GOBIN="$BIN" GOFLAGS= go install -p "$GO_PARALLEL" -trimpath -ldflags "-s -w" "$1"; }

debian() {
  local missing=()
  for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && { log "debian packages present"; return; }
  log "installing debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

KUBERNETES_COMMANDS="kube-apiserver kube-controller-manager kube-scheduler kubectl"

kubernetes() {
  local stamp="$BIN/.kubernetes-$KUBERNETES_VERSION" missing=0 cmd
  for cmd in $KUBERNETES_COMMANDS; do [ -x "$BIN/$cmd" ] || missing=1; done
  [ -f "$stamp" ] && [ "$missing" = 0 ] && { log "kubernetes $KUBERNETES_VERSION cached"; return; }
  log "building $KUBERNETES_COMMANDS $KUBERNETES_VERSION (10-20 min cold)"
  local work="$CACHE/src/kubernetes-$KUBERNETES_VERSION"
  mkdir -p "$work"
  local kdir
  kdir=$(cd "$work" && module_dir "k8s.io/kubernetes@$KUBERNETES_VERSION")
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go install` rejects;
  # a local module that pins each staging module to its published v0.Y.Z builds the same code.
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  {
    echo "module llmtwin.local/kubebuild"
    echo "go 1.24"
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$kdir/go.mod" \
      | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
  } >"$work/go.mod"
  local ver="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
  ver="$ver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
  ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
  local packages=()
  for cmd in $KUBERNETES_COMMANDS; do packages+=("k8s.io/kubernetes/cmd/$cmd"); done
  (cd "$work" && go build -p "$GO_PARALLEL" -trimpath -ldflags "-s -w $ver" -o "$BIN/" "${packages[@]}")
  touch "$stamp"
}

crds() {
  local out="$CACHE/crds"
  local stamp="$out/.stamp-$ARGO_WORKFLOWS_VERSION-$ARGO_ROLLOUTS_VERSION-$PROMETHEUS_OPERATOR_VERSION-$ARGO_CD_VERSION-$KNATIVE_SERVING_VERSION"
  [ -f "$stamp" ] && { log "third-party CRDs cached"; return; }
  log "fetching Argo Workflows/Rollouts/CD, prometheus-operator and Knative Serving CRDs from their Go module zips"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && go mod init crds >/dev/null 2>&1)
  mod_dir() { (cd "$tmp" && module_dir "$1"); }
  rm -rf "$out"; mkdir -p "$out"/{argo-workflows,argo-rollouts,prometheus-operator,argo-cd,knative-serving}
  cp "$(mod_dir "github.com/argoproj/argo-workflows/v3@$ARGO_WORKFLOWS_VERSION")"/manifests/base/crds/full/*.yaml "$out/argo-workflows/"
  cp "$(mod_dir "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION")"/manifests/crds/*-crd.yaml "$out/argo-rollouts/"
  cp "$(mod_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"/example/prometheus-operator-crd-full/*.yaml "$out/prometheus-operator/"
  # Argo CD: Application, ApplicationSet, AppProject (the argocd/ Applications are validated against them).
  cp "$(mod_dir "github.com/argoproj/argo-cd/v3@$ARGO_CD_VERSION")"/manifests/crds/*-crd.yaml "$out/argo-cd/"
  # Knative Serving: Service, Configuration, Revision, Route, DomainMapping and its autoscaling CRDs
  # (manifests/gateway/knative's Service is validated against them; eventing-kafka's KafkaSource is not on the proxy).
  cp "$(mod_dir "knative.dev/serving@$KNATIVE_SERVING_VERSION")"/config/core/300-resources/*.yaml "$out/knative-serving/"
  rm -f "$out"/*/kustomization.yaml
  chmod -R u+w "$out"; rm -rf "$tmp"
  touch "$stamp"
}

kafka() {
  local dir="$CACHE/kafka-$KAFKA_VERSION"
  [ -f "$dir/.stamp" ] && { log "kafka $KAFKA_VERSION cached"; return; }
  log "fetching kafka_$SCALA_VERSION $KAFKA_VERSION jars from Maven Central"
  mkdir -p "$dir"
  sed -e "s/@KAFKA_VERSION@/$KAFKA_VERSION/" -e "s/@SCALA_VERSION@/$SCALA_VERSION/" "$here/kafka/pom.xml" >"$dir/pom.xml"
  (cd "$dir" && mvn -q -B -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies -DoutputDirectory="$dir/libs" -DincludeScope=runtime)
  touch "$dir/.stamp"
}

minio() {
  local stamp="$BIN/.minio-$MINIO_VERSION"
  [ -f "$stamp" ] && { log "minio cached"; return; }
  log "building minio $MINIO_VERSION (a few minutes cold)"
  go_install "github.com/minio/minio@$MINIO_VERSION"
  touch "$stamp"
}

rollouts() {
  local stamp="$BIN/.rollouts-$ARGO_ROLLOUTS_VERSION"
  [ -f "$stamp" ] && { log "argo rollouts controller $ARGO_ROLLOUTS_VERSION cached"; return; }
  log "building the Argo Rollouts controller $ARGO_ROLLOUTS_VERSION (a few minutes cold)"
  local work="$CACHE/src/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
  mkdir -p "$work"
  local rdir
  rdir=$(cd "$work" && module_dir "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION")
  # Its go.mod pins the Kubernetes staging modules with replace directives, which `go install` ignores;
  # a local module that requires it and repeats them builds the released code.
  {
    echo "module llmtwin.local/rolloutsbuild"
    echo "go 1.24"
    echo "require github.com/argoproj/argo-rollouts $ARGO_ROLLOUTS_VERSION"
    sed -n -e '/^replace (/,/^)/p' -e '/^replace [^(]/p' "$rdir/go.mod"
  } >"$work/go.mod"
  (cd "$work" && go build -p "$GO_PARALLEL" -trimpath -ldflags "-s -w" -o "$BIN/" \
    github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
  touch "$stamp"
}

kwok() {
  local stamp="$BIN/.kwok-$KWOK_VERSION"
  [ -f "$stamp" ] && { log "kwok $KWOK_VERSION cached"; return; }
  log "building kwok $KWOK_VERSION (about a minute cold)"
  go_install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # Its stages (how simulated nodes become Ready and pods Running, then go away), from the same module.
  local kdir
  kdir=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
  rm -rf "$CACHE/kwok-stages"; mkdir -p "$CACHE/kwok-stages"
  cp "$kdir"/kustomize/stage/node/fast/node-initialize.yaml "$kdir"/kustomize/stage/node/heartbeat/node-heartbeat.yaml \
    "$kdir"/kustomize/stage/pod/fast/pod-{ready,complete,delete}.yaml "$CACHE/kwok-stages/"
  chmod -R u+w "$CACHE/kwok-stages"
  touch "$stamp"
}

# The base of the real OCI builds (tests/images/test_oci_images.py builds images/{operator,gateway} with buildah,
# from their unchanged Dockerfiles). It stands in for docker.io/library/python:3.11-slim, the image their FROM
# names, which no registry reachable here serves: Debian bookworm's python3.11 with pip (mmdebstrap, from
# Debian's archive), Debian's EXTERNALLY-MANAGED marker removed (the official image has none, and the
# Dockerfiles `pip install` into the system), and this machine's extra CA certificates (its HTTPS proxy) trusted,
# so pip inside a build reaches PyPI. The rootfs tar is kept in $CACHE/oci (keyed by suite, packages and CAs);
# it is committed under the official name into a buildah store ($CACHE/oci/storage.conf: overlay, or vfs where
# overlay cannot mount). Needs root (chroot builds). When it cannot work it says why, also in
# $CACHE/oci/unavailable, which the tests report, and the rest of the build goes on.
OCI_SUITE=bookworm
OCI_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
OCI_BASE_IMAGE=docker.io/library/python:3.11-slim

oci_base() {
  local dir="$CACHE/oci" ca cas=() key
  mkdir -p "$dir"; rm -f "$dir/unavailable"
  oci_unavailable() { log "oci_base skipped: $*"; echo "$*" >"$dir/unavailable"; }
  [ "$(id -u)" -eq 0 ] || { oci_unavailable "needs root (buildah --isolation chroot); uid is $(id -u)"; return 0; }
  command -v buildah >/dev/null && command -v mmdebstrap >/dev/null \
    || { oci_unavailable "buildah or mmdebstrap missing: run infra/build.sh debian"; return 0; }
  for ca in /usr/local/share/ca-certificates/*.crt; do [ -e "$ca" ] && cas+=("$ca"); done
  key=$( { echo "$OCI_SUITE $OCI_PACKAGES"; if [ ${#cas[@]} -gt 0 ]; then cat "${cas[@]}"; fi; } | sha256sum | cut -c1-12)
  local tar="$dir/base-$OCI_SUITE-$key.tar"
  if [ ! -s "$tar" ]; then
    log "making the OCI base rootfs (Debian $OCI_SUITE: $OCI_PACKAGES) with mmdebstrap (~30 s)"
    local hooks=(--customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED')
    for ca in "${cas[@]}"; do hooks+=(--customize-hook="copy-in $ca /usr/local/share/ca-certificates/"); done
    hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
    rm -f "$dir"/base-*.tar
    nice -n 10 mmdebstrap --quiet --mode=root --variant=minbase --format=tar --include="$OCI_PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' "${hooks[@]}" "$OCI_SUITE" "$tar.partial" \
      "deb http://deb.debian.org/debian $OCI_SUITE main" \
      "deb http://deb.debian.org/debian $OCI_SUITE-updates main" \
      "deb http://deb.debian.org/debian-security $OCI_SUITE-security main" \
      || { rm -f "$tar.partial"; oci_unavailable "mmdebstrap failed (output above)"; return 0; }
    mv "$tar.partial" "$tar"
  fi
  # One store per cache; its run state (locks, mounts) in /run, keyed by the store's path.
  local driver runroot
  runroot="/run/llmtwin-oci-$(echo "$dir" | sha256sum | cut -c1-8)"
  local -x CONTAINERS_STORAGE_CONF="$dir/storage.conf"
  for driver in overlay vfs; do
    printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' "$driver" "$dir/storage" "$runroot" >"$CONTAINERS_STORAGE_CONF"
    buildah images >/dev/null 2>"$dir/store.log" && break
    log "buildah cannot use the $driver storage driver: $(head -n 1 "$dir/store.log")"
    [ "$driver" = vfs ] && { oci_unavailable "buildah cannot open its store (see $dir/store.log)"; return 0; }
  done
  local stamp="$dir/.imported-$driver-$key"
  if [ -f "$stamp" ] && buildah inspect --type image "$OCI_BASE_IMAGE" >/dev/null 2>&1; then
    log "OCI base $OCI_BASE_IMAGE cached ($driver storage)"; return 0
  fi
  log "importing the base into buildah's store ($driver) as $OCI_BASE_IMAGE"
  buildah rm llmtwin-oci-base >/dev/null 2>&1 || true
  buildah from --quiet --name llmtwin-oci-base scratch >/dev/null \
    && buildah add --quiet llmtwin-oci-base "$tar" / \
    && buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
      --cmd python3 llmtwin-oci-base \
    && buildah commit --quiet --rm llmtwin-oci-base "$OCI_BASE_IMAGE" >/dev/null \
    || { buildah rm llmtwin-oci-base >/dev/null 2>&1; oci_unavailable "buildah could not import the base (output above)"; return 0; }
  buildah rmi --prune >/dev/null 2>&1 || true  # an earlier base, now untagged
  rm -f "$dir"/.imported-*; touch "$stamp"
}

targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all) debian; crds; kafka; minio; kubernetes; rollouts; kwok; oci_base ;;
    debian|kubernetes|crds|kafka|minio|rollouts|kwok|oci_base) "$t" ;;
    *) echo "unknown target: $t (all|debian|kubernetes|crds|kafka|minio|rollouts|kwok|oci_base)" >&2; exit 2 ;;
  esac
done
