#!/usr/bin/env bash
# Builds (once) the real components the tests and `llmtwin up` run against, into a cache outside
# the clone so fresh clones on the same machine reuse them:
#   $LLMTWIN_CACHE/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubectl,minio,rollouts-controller,kwok}
#   $LLMTWIN_CACHE/kafka-<v>/libs/*.jar
#   $LLMTWIN_CACHE/crds/{argo-workflows,argo-rollouts,prometheus-operator,argo-cd,knative-serving}/*.yaml
#   $LLMTWIN_CACHE/kwok-stages/*.yaml
# Usage: infra/build.sh [all|debian|kubernetes|crds|kafka|minio|rollouts|kwok]...   (default: all)
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

targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all) debian; crds; kafka; minio; kubernetes; rollouts; kwok ;;
    debian|kubernetes|crds|kafka|minio|rollouts|kwok) "$t" ;;
    *) echo "unknown target: $t (all|debian|kubernetes|crds|kafka|minio|rollouts|kwok)" >&2; exit 2 ;;
  esac
done
