#!/usr/bin/env bash
# Thread-safety analysis: the ABSL_GUARDED_BY / ABSL_LOCKS_EXCLUDED
# annotations are checked only by clang's -Wthread-safety. This compiles
# every C++ source of the build in ${BUILD_DIR:-build} (its
# compile_commands.json; scripts/build.sh exports it) with clang,
# -fsyntax-only (no code is generated, so it costs a parse per file), and
# fails on any thread-safety warning.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
jobs=${JOBS:-2}

if ! command -v clang++ > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends clang
fi
if [[ ! -f $build_dir/compile_commands.json ]]; then
  echo "thread-safety: no $build_dir/compile_commands.json (run scripts/build.sh)"
  exit 1
fi

# One line per C++ source of ours: directory, then the compile command with
# clang++ in place of the compiler, the output dropped, and GCC-only flags
# removed.
python3 - "$build_dir/compile_commands.json" "$PWD" > "$build_dir/thread-safety.cmds" <<'PY'
import json, shlex, sys
root = sys.argv[2] + "/"
for entry in json.load(open(sys.argv[1])):
    source = entry["file"]
    if not source.startswith(root) or not source.endswith(".cc"):
        continue  # generated code and the .cu files (nvcc) are not ours here
    args = shlex.split(entry["command"])
    while args and ("ccache" in args[0] or args[0].endswith("launcher")):
        args = args[1:]
    out, skip = ["clang++"], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            continue
        if a in ("-MD", "-c") or a.startswith("-Wno-maybe-uninitialized"):
            continue
        out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety",
            "-Werror=thread-safety", "-Wno-unknown-warning-option"]
    print(shlex.quote(entry["directory"]) + " " +
          shlex.quote(" ".join(shlex.quote(a) for a in out)))
PY

count=$(wc -l < "$build_dir/thread-safety.cmds")
echo "== thread-safety: clang -Wthread-safety over $count sources ($jobs jobs)"
log=$build_dir/thread-safety.log
: > "$log"
# Each line: cd DIR && CMD; any failure shows its diagnostics and fails.
if ! xargs -P "$jobs" -L 1 sh -c 'cd "$0" && eval "$1" 2>&1' \
    < "$build_dir/thread-safety.cmds" >> "$log"; then
  grep -E "error|warning" "$log" | head -50
  echo "thread-safety: FAILED; see $log"
  exit 1
fi
if grep -q "thread-safety" "$log"; then
  grep -E "thread-safety" "$log" | head -50
  echo "thread-safety: FAILED; see $log"
  exit 1
fi
echo "thread-safety: clean"
