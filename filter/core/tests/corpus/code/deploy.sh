#!/usr/bin/env bash
# deploy.sh — build, push and roll out the API image to a Kubernetes namespace.
#
# Usage: ./deploy.sh <environment> [--skip-tests] [--dry-run]
#   environment: staging | production
set -euo pipefail

readonly APP="orders-api"
readonly REGISTRY="registry.internal.example:5000"
readonly ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

env="${1:-}"
skip_tests=0
dry_run=0
shift || true
for arg in "$@"; do
  case "$arg" in
    --skip-tests) skip_tests=1 ;;
    --dry-run) dry_run=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

case "$env" in
  staging)    namespace="orders-staging"; replicas=2 ;;
  production) namespace="orders-prod";    replicas=6 ;;
  *) echo "usage: $0 <staging|production> [--skip-tests] [--dry-run]" >&2; exit 2 ;;
esac

log() { printf '\033[1;34m[%s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }
run() { if (( dry_run )); then echo "+ $*"; else "$@"; fi; }

command -v docker >/dev/null || die "docker is not installed"
command -v kubectl >/dev/null || die "kubectl is not installed"

cd "$ROOT"
if [[ -n "$(git status --porcelain)" ]]; then
  die "working tree is dirty; commit or stash first"
fi

sha="$(git rev-parse --short=12 HEAD)"
tag="${REGISTRY}/${APP}:${sha}"

if (( ! skip_tests )); then
  log "running tests"
  run make test
fi

log "building ${tag}"
run docker build --pull --build-arg GIT_SHA="$sha" -t "$tag" .
run docker push "$tag"

if [[ "$env" == "production" ]]; then
  read -r -p "Deploy ${sha} to PRODUCTION? Type the short sha to confirm: " answer
  [[ "$answer" == "$sha" ]] || die "confirmation did not match; aborting"
fi

log "rolling out to ${namespace} (${replicas} replicas)"
run kubectl -n "$namespace" set image "deployment/${APP}" "${APP}=${tag}"
run kubectl -n "$namespace" scale "deployment/${APP}" --replicas="$replicas"
if ! run kubectl -n "$namespace" rollout status "deployment/${APP}" --timeout=300s; then
  log "rollout failed; rolling back"
  run kubectl -n "$namespace" rollout undo "deployment/${APP}"
  die "deployment of ${sha} to ${env} failed"
fi

log "smoke test"
url="$(kubectl -n "$namespace" get ingress "$APP" -o jsonpath='{.spec.rules[0].host}')"
for i in {1..10}; do
  code="$(curl -s -o /dev/null -w '%{http_code}' "https://${url}/healthz" || true)"
  [[ "$code" == "200" ]] && { log "healthy after ${i} tries"; exit 0; }
  sleep 3
done
die "health check at https://${url}/healthz did not return 200"
