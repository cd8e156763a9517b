#!/usr/bin/env bash
# The Python client's checks (clients/python), run by ctest (label python)
# and by hand. Installs, pinned, from PyPI into a virtualenv under the build
# directory (once; later runs reuse it): the client's dependencies, pytest
# and grpcio-tools (for the stub check), then the client itself, editable.
# When the virtualenv cannot be made (no python3-venv and no apt, or no
# network to PyPI) it exits 77, which ctest reports as skipped, saying why.
#
# Usage: scripts/python-client-test.sh [tests|stubs|venv] [pytest args...]
#   tests  pytest clients/python/tests against ENGRAM_SERVER_BINARY
#   stubs  clients/python/check_stubs.py: the committed stubs match the proto
#   venv   only make the virtualenv
# BUILD_DIR (default build) holds the virtualenv; ENGRAM_SERVER_BINARY
# (default $BUILD_DIR/server/engram-server) is the server the tests start.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
venv=$build_dir/python-client-venv
export ENGRAM_SERVER_BINARY=${ENGRAM_SERVER_BINARY:-$build_dir/server/engram-server}
# Keep grpcio-tools in step with clients/python/check_stubs.py.
requirements=(grpcio==1.85.4 grpcio-tools==1.85.4 protobuf==7.36.2
              numpy==2.4.6 pytest==9.2.0 "setuptools>=68")
skip_code=77

skip() {
  echo "python-client-test: SKIPPED: $*" >&2
  exit "$skip_code"
}

make_venv() {
  local stamp=$venv/installed want
  want="${requirements[*]} $(sha256sum clients/python/pyproject.toml | cut -c1-16)"
  if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    return 0
  fi
  rm -rf "$venv"
  echo "== installing ${requirements[*]} and clients/python into $venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 has venv in a package of its own.
    rm -rf "$venv"
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
      skip "python3 -m venv fails and python3-venv cannot be installed here"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq \
      --no-install-recommends python3-venv >/dev/null; }; then
      skip "cannot install python3-venv with apt-get (no network?)"
    fi
    python3 -m venv "$venv" || skip "cannot create a virtualenv at $venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check --timeout 30 --retries 1 \
    "${requirements[@]}" || skip "cannot install ${requirements[*]} from PyPI"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    --no-build-isolation -e clients/python ||
    skip "cannot install clients/python into $venv"
  echo "$want" >"$stamp"
}

command=${1:-tests}
shift || true
mkdir -p "$build_dir"
# ctest may run the tests in parallel: one makes the virtualenv, the others
# wait for it.
exec 9>"$build_dir/python-client-venv.lock"
flock 9
make_venv
flock -u 9

case $command in
  venv) ;;
  stubs) exec "$venv/bin/python" clients/python/check_stubs.py ;;
  tests)
    [[ -x $ENGRAM_SERVER_BINARY ]] ||
      { echo "python-client-test: build engram-server first ($ENGRAM_SERVER_BINARY)" >&2; exit 1; }
    exec "$venv/bin/python" -m pytest -q -p no:cacheprovider clients/python/tests "$@"
    ;;
  *) echo "python-client-test: unknown command $command; see the usage in $0" >&2; exit 2 ;;
esac
