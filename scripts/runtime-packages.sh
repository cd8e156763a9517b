#!/usr/bin/env bash
# Prints, one a line, the Debian/Ubuntu packages holding the shared libraries
# that the given ELF binaries load (found with ldd, owned per dpkg), so that a
# runtime image installs just those. The Dockerfile's runtime stage uses it;
# CI runs it on the Debian 12 build (scripts/check-deploy.sh). Fails when a
# library is missing or belongs to no package, rather than print a short list.
#
# Usage: scripts/runtime-packages.sh BINARY...
set -euo pipefail
if (($# == 0)); then
  echo "usage: $0 BINARY..." >&2
  exit 2
fi

status=0
declare -A libraries=()  # resolved path -> the binary that needs it
for binary in "$@"; do
  if [[ ! -f $binary ]]; then
    echo "runtime-packages: no such file: $binary" >&2
    exit 1
  fi
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue  # the vDSO and the loader's own line
    if [[ $path == not ]]; then
      # The NVIDIA container runtime mounts the driver's libcuda from the node.
      if [[ $name == libcuda.so.* ]]; then continue; fi
      echo "runtime-packages: $binary needs $name, which is not found" >&2
      status=1
      continue
    fi
    libraries[$path]=$binary
  done < <(ldd "$binary")
done
if ((status != 0)); then exit "$status"; fi
if ((${#libraries[@]} == 0)); then
  echo "runtime-packages: found no shared libraries in $*" >&2
  exit 1
fi

# dpkg knows each file under the one spelling its package ships, while ldd
# may print another (merged /usr, symlinks such as /usr/local/cuda): ask for
# every spelling in one query (one read of dpkg's database).
spellings() {
  local path=$1 real
  real=$(readlink -f "$path")
  printf '%s\n' "$path" "$real" "/usr$path" "/usr$real" "${path#/usr}" \
    "${real#/usr}" | grep '^/' | sort -u
}
declare -A owner=()
mapfile -t queries < <(for path in "${!libraries[@]}"; do spellings "$path"; done)
while IFS= read -r line; do
  # "pkg:arch, pkg2:arch: /path" -> owner[/path] = pkg
  packages=${line%%: /*}
  package=${packages%%,*}
  owner[${line#*: }]=${package%%:*}
done < <(dpkg-query -S "${queries[@]}" 2>/dev/null || true)

declare -A result=()
for path in "${!libraries[@]}"; do
  found=""
  while read -r spelling; do
    if [[ -n ${owner[$spelling]:-} ]]; then
      found=${owner[$spelling]}
      break
    fi
  done < <(spellings "$path")
  if [[ -z $found ]]; then
    echo "runtime-packages: no package owns $path" \
      "(needed by ${libraries[$path]})" >&2
    status=1
  else
    result[$found]=1
  fi
done
if ((status != 0)); then exit "$status"; fi
printf '%s\n' "${!result[@]}" | sort
