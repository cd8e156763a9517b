#!/usr/bin/env bash
# Builds the CPU variant of the Dockerfile with buildah and runs it, as CI's
# last step (scripts/test.sh). The base is Debian 12 (bookworm) minbase, made
# with debootstrap, the release CI builds on; the image takes the binaries
# just built in BUILD_DIR (--build-arg BINARIES=context) instead of compiling
# the project a second time; ENGRAM_IMAGE_BINARIES=source checks the
# Dockerfile's default path instead, compiling in the builder stage (minutes
# more). It checks that:
#   - the runtime stage installs exactly scripts/runtime-packages.sh's list
#     (beyond the base's packages; their dependencies come as automatic);
#   - ldd inside the image finds every shared library the binaries load;
#   - engram-server, run in the image as the image's user with a read-only
#     root (and a tmpfs /tmp, as in deploy/kubernetes), listens on loopback:
#     the host's engram-cli sees health SERVING and gets answers to a
#     BatchCosine of random data, and /metrics answers;
#   - SIGTERM makes the server exit with 0 within a few seconds.
# Where this machine cannot do it (not root, no buildah or debootstrap, not
# Debian 12, the Debian archive unreachable, failing, or so slow that the base
# and the build outlast ENGRAM_IMAGE_TIMEOUT) it prints "SKIPPED: why" and
# exits 0; a failed check exits 1.
#
# The base image and buildah's storage (with its layer cache) are kept in
# ENGRAM_IMAGE_CACHE between runs: the base is made again once a week.
#
# Usage: scripts/image-check.sh
#   BUILD_DIR            build tree with engram-server and engram-cli
#                        (default build)
#   ENGRAM_IMAGE_CACHE   the cache (default /var/cache/engram-image)
#   ENGRAM_IMAGE_MIRROR  the Debian archive (default http://deb.debian.org/debian)
#   ENGRAM_IMAGE_SECURITY_MIRROR  its security suites (default: the archive's
#                        address, debian -> debian-security)
#   ENGRAM_IMAGE_BINARIES  context (default) or source, the Dockerfile's
#                        BINARIES
#   JOBS                 compile jobs in the builder stage, for source (default 2)
#   ENGRAM_IMAGE_TIMEOUT seconds the base and the image build may take in
#                        all (default 600; 1800 for source)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
server=$build_dir/server/engram-server
cli=$build_dir/client/engram-cli
cache=${ENGRAM_IMAGE_CACHE:-/var/cache/engram-image}
mirror=${ENGRAM_IMAGE_MIRROR:-http://deb.debian.org/debian}
binaries=${ENGRAM_IMAGE_BINARIES:-context}
case $binaries in
  context) time_limit=${ENGRAM_IMAGE_TIMEOUT:-600} ;;
  source) time_limit=${ENGRAM_IMAGE_TIMEOUT:-1800} ;;
  *) echo "image-check: ENGRAM_IMAGE_BINARIES is context or source" >&2; exit 2 ;;
esac
suite=bookworm
image=localhost/engram-similarity:image-check

skip() {
  echo "image-check: SKIPPED: $*"
  exit 0
}
fail() {
  echo "image-check: FAILED: $*" >&2
  exit 1
}
elapsed() { printf '%dm%02ds' $((SECONDS / 60)) $((SECONDS % 60)); }
say() { echo "== image-check [$(elapsed)] $*"; }

((EUID == 0)) || skip "needs root (buildah storage, mounts, chroot)"
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[[ $codename == "$suite" ]] ||
  skip "the binaries must be built on Debian 12 ($suite), this is '$codename'"
# Only this check needs buildah and debootstrap, so they are installed here
# rather than by scripts/install-deps.sh (which serving also runs); with
# buildah's recommended packages (crun, fuse-overlayfs), as it was tried.
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing buildah and debootstrap"
  { command -v apt-get >/dev/null && apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      buildah debootstrap >/dev/null; } ||
    skip "buildah and debootstrap are not installed and apt-get cannot install them"
fi
for tool in buildah debootstrap unshare chroot flock curl python3; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
if [[ $binaries == context && ! (-x $server && -x $cli) ]]; then
  fail "build engram-server and engram-cli first ($server, $cli)"
fi
[[ -x $cli ]] || fail "build engram-cli first ($cli): it calls the image"
curl -fsS --max-time 20 -o /dev/null "$mirror/dists/$suite/InRelease" ||
  skip "the Debian archive $mirror is unreachable"

mkdir -p "$cache"
# One check at a time per cache.
exec 9>"$cache/lock"
flock -w "$time_limit" 9 || skip "$cache is held by another image check"
# buildah's storage of its own, so that its layer cache stays with the base.
bh() {
  buildah --root "$cache/storage" --runroot "$cache/run" "$@"
}
# buildah build leaves a working container for each stage that is only a
# FROM; nothing else uses this storage, so every container goes.
bh rm --all >/dev/null 2>&1 || true
# What the check needs of the machine: buildah's storage, and mounts in a
# namespace of its own.
if ! probe=$(bh from scratch 2>&1) || ! bh mount "$probe" >/dev/null 2>&1; then
  skip "buildah cannot create and mount a container here: $probe"
fi
bh rm --all >/dev/null
unshare --mount --propagation private -- true 2>/dev/null ||
  skip "unshare --mount is not allowed here"
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  bh rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
deadline=$((SECONDS + time_limit))
left() {
  local s=$((deadline - SECONDS))
  echo $((s > 0 ? s : 1))
}

# 1. The base: Debian 12 minbase, with the updates and security suites that
# the build machine's packages come from. One a week (ISO year and week).
base=localhost/engram-debian:$suite-$(date -u +%G-w%V)
if bh inspect --type image "$base" >/dev/null 2>&1; then
  say "base $base: cached"
else
  say "base $base: debootstrap --variant=minbase $suite $mirror"
  if ! timeout "$(left)" debootstrap --variant=minbase "$suite" \
    "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 20 "$work/debootstrap.log"
    skip "debootstrap from $mirror failed or ran out of time (log above)"
  fi
  security=${ENGRAM_IMAGE_SECURITY_MIRROR:-${mirror%/debian}/debian-security}
  cat >"$work/rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb \
    "$work/rootfs/var/lib/apt/lists/"*
  container=$(bh from scratch)
  cp -a "$work/rootfs/." "$(bh mount "$container")/"
  bh umount "$container" >/dev/null
  bh config --cmd /bin/bash "$container"
  bh commit --quiet --rm "$container" "$base" >/dev/null
  rm -rf "$work/rootfs"
  # Earlier weeks' bases, and layers that only they used.
  for old in $(bh images --format '{{.Name}}:{{.Tag}}' |
    grep '^localhost/engram-debian:' | grep -vxF "$base"); do
    bh rmi "$old" >/dev/null 2>&1 || true
  done
  bh rmi --prune >/dev/null 2>&1 || true
fi

# 2. The image: the CPU variant. With BINARIES=context the context holds the
# binaries of BUILD_DIR alone (prebuilt/, as the Dockerfile reads it); with
# source it is the checkout. --format docker keeps the HEALTHCHECK, as docker
# does.
build_args=(--build-arg VARIANT=cpu --build-arg BINARIES="$binaries"
  --build-arg JOBS="${JOBS:-2}" --build-arg CPU_BUILDER_IMAGE="$base"
  --build-arg CPU_RUNTIME_IMAGE="$base")
if [[ $binaries == context ]]; then
  context=$work/context
  mkdir -p "$context/prebuilt"
  cp "$server" "$cli" "$context/prebuilt/"
  scripts/runtime-packages.sh "$server" "$cli" \
    >"$context/prebuilt/runtime-packages.txt"
else
  context=$PWD
fi
say "buildah build --build-arg VARIANT=cpu --build-arg BINARIES=$binaries"
image_build() {
  timeout "$(left)" buildah --root "$cache/storage" --runroot "$cache/run" \
    build --isolation chroot --layers --pull=never --format docker \
    "${build_args[@]}" -f "$PWD/Dockerfile" "$@" "$context" \
    >>"$work/build.log" 2>&1 || {
    status=$?
    tail -n 40 "$work/build.log"
    # Past the time limit, the runtime stage's apt-get was waiting on the
    # archive (there is nothing else slow to wait for).
    ((status != 124)) ||
      skip "the image build ran out of time (ENGRAM_IMAGE_TIMEOUT=$time_limit)"
    # The runtime stage's apt-get: the archive, not the image, failed.
    if grep -qE '^(E|W): (Failed to fetch|Could not resolve|Some index files)' \
      "$work/build.log"; then
      skip "the image's apt-get could not reach the Debian archive (log above)"
    fi
    fail "buildah build failed (log above)"
  }
}
image_build -t "$image"
grep -E '^\[|STEP|Using cache' "$work/build.log" | sed 's/^/  /'
# The list the runtime stage installed: the builder stage's, from the layer
# cache. Tagged, so that the prune below keeps that stage's layers.
image_build --target builder -t "$image-builder"
container=$(bh from --pull=never "$image-builder")
cp "$(bh mount "$container")/out/runtime-packages.txt" "$work/"
bh rm "$container" >/dev/null
paste -sd' ' "$work/runtime-packages.txt"
bh rmi --prune >/dev/null 2>&1 || true

# 3. The image as it runs: mounted, bound read-only, entered with chroot.
container=$(bh from --pull=never "$image")
mounted=$(bh mount "$container")
root=$work/root
mkdir -p "$root"
# in_image USER:GROUP COMMAND...: COMMAND in the image, as USER:GROUP, on a
# read-only root with the host's /dev and /proc and a tmpfs /tmp. The process
# is the caller's (exec), in a mount namespace of its own, so that a signal
# to `in_image ... &`'s $! reaches COMMAND: call it only in a subshell ($(),
# a pipeline or &).
in_image() {
  local user=$1
  shift
  # shellcheck disable=SC2016  # the inner shell expands them
  exec unshare --mount --propagation private -- /bin/sh -euc '
    mounted=$1 root=$2 user=$3
    shift 3
    mount --bind "$mounted" "$root"
    mount -o remount,bind,ro "$root"
    mount --bind /dev "$root/dev"
    mount --bind /proc "$root/proc"
    mount -t tmpfs -o size=64m,mode=1777 tmpfs "$root/tmp"
    exec chroot --userspec="$user" "$root" "$@"' \
    in_image "$mounted" "$root" "$user" "$@"
}

say "packages: exactly the runtime list beyond the base's"
base_container=$(bh from --pull=never "$base")
base_manual=$(chroot "$(bh mount "$base_container")" apt-mark showmanual | sort)
bh rm "$base_container" >/dev/null
image_manual=$(in_image 0:0 apt-mark showmanual | sort)
wanted=$(comm -23 <(sort "$work/runtime-packages.txt") \
  <(echo "$base_manual"))
added=$(comm -23 <(echo "$image_manual") <(echo "$base_manual"))
if [[ $added != "$wanted" ]]; then
  diff <(echo "$wanted") <(echo "$added") | sed 's/^/  /' >&2
  fail "packages installed by hand in the image differ from the list" \
    "(< listed, > installed)"
fi
listed=$(wc -l <"$work/runtime-packages.txt")
automatic=$(in_image 0:0 apt-mark showauto | wc -l)
echo "  $listed listed ($((listed - $(echo "$added" | wc -w))) already in the" \
  "base), $automatic more as their dependencies"

say "ldd in the image"
ldd_out=$(in_image 10001:10001 ldd /usr/local/bin/engram-server \
  /usr/local/bin/engram-cli)
if grep 'not found' <<<"$ldd_out"; then
  fail "shared libraries missing in the image"
fi
echo "  $(grep -c '=>' <<<"$ldd_out") libraries found"

say "engram-server in the image (user 10001, read-only root, loopback)"
read -r grpc_port metrics_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
address=127.0.0.1:$grpc_port
in_image 10001:10001 /usr/local/bin/engram-server \
  --grpc_address="$address" --metrics_address="127.0.0.1:$metrics_port" \
  --worker_threads=2 --drain_deadline=1s >"$work/server.log" 2>&1 &
server_pid=$!
serving=""
for _ in $(seq 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  if out=$("$cli" health --server="$address" --timeout=1s 2>&1); then
    serving=$out
    break
  fi
  sleep 0.2
done
if [[ $serving != *SERVING* ]]; then
  sed 's/^/  server: /' "$work/server.log" >&2
  fail "no health SERVING from the server in the image (last: ${out:-})"
fi
echo "  health: $serving"

cosine=$("$cli" cosine --server="$address" --timeout=10s --random=4,1000,64 \
  --seed=7 --top_k=3 2>&1) || {
  echo "$cosine" >&2
  fail "engram-cli cosine against the image failed"
}
echo "$cosine" | head -n 5 | sed 's/^/  cosine: /'
metrics=$(curl -fsS --max-time 5 "http://127.0.0.1:$metrics_port/metrics") ||
  fail "no answer on /metrics"
grep -q '^engram_' <<<"$metrics" || fail "no engram_ metrics on /metrics"
echo "  /metrics: ok"

say "SIGTERM"
kill -TERM "$server_pid"
for _ in $(seq 50); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
  fail "the server did not exit within 5s of SIGTERM"
fi
status=0
wait "$server_pid" || status=$?
server_pid=""
if ((status != 0)); then
  sed 's/^/  server: /' "$work/server.log" >&2
  fail "the server exited with $status after SIGTERM"
fi
echo "  exit status 0"
say "ok"
