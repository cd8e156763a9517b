#!/usr/bin/env bash
# Thread-safety analysis: the ABSL_GUARDED_BY / ABSL_LOCKS_EXCLUDED
# annotations are checked only by clang's -Wthread-safety. This compiles
# every C++ source of ours in the build ${BUILD_DIR:-build} (its
# compile_commands.json, which scripts/build.sh exports) with clang and
# -fsyntax-only: no code is generated, so a file costs one parse. Any
# thread-safety warning, or a file clang cannot compile, fails the job.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}

if ! command -v clang++ > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends clang
fi
if [[ ! -f $build_dir/compile_commands.json ]]; then
  echo "thread-safety: no $build_dir/compile_commands.json (scripts/build.sh makes it)"
  exit 1
fi

exec python3 - "$build_dir/compile_commands.json" "$PWD" "${JOBS:-2}" <<'PY'
import concurrent.futures, json, shlex, subprocess, sys

commands, root, jobs = sys.argv[1], sys.argv[2] + "/", int(sys.argv[3])
FLAGS = ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
         "-Wno-unknown-warning-option"]

def clang_command(entry):
    """The entry's compile command with clang++ as the compiler, no output
    and no GCC-only flags."""
    args = shlex.split(entry["command"])
    out, skip = ["clang++"], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a in ("-o", "-MF", "-MT"):
            skip = True
        elif a not in ("-MD", "-c") and not a.startswith("-Wno-maybe-uninit"):
            out.append(a)
    return out + FLAGS

# Generated code and the .cu files (nvcc's) are not checked here.
entries = [e for e in json.load(open(commands))
           if e["file"].startswith(root) and e["file"].endswith(".cc")]
print(f"== thread-safety: clang -Wthread-safety over {len(entries)} sources "
      f"({jobs} jobs)", flush=True)

def check(entry):
    done = subprocess.run(clang_command(entry), cwd=entry["directory"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    return entry["file"], done.returncode, done.stdout

failed = 0
with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    for path, code, output in pool.map(check, entries):
        if code != 0 or "thread-safety" in output:
            failed += 1
            print(f"-- {path[len(root):]}\n{output}", flush=True)
if failed:
    print(f"thread-safety: FAILED in {failed} of {len(entries)} sources")
    sys.exit(1)
print(f"thread-safety: clean ({len(entries)} sources)")
PY
