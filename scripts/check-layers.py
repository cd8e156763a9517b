#!/usr/bin/env python3
"""Checks that every library includes only headers of libraries it links,
and that its files open only its own namespace.

The layers (docs/architecture.md) are CMake libraries, one per folder, whose
dependencies point down. A header of another folder is usable only when its
library is linked, directly or through a PUBLIC/INTERFACE dependency: a
missing link is a cycle waiting for the first non-inline call, or a layer
reaching up. This reads CMake's own model of the build (the file API reply
that the top-level CMakeLists.txt asks for) and every project #include.

A folder's namespace is engram:: and its path, except that a library below
core/ is named for its own folder (core/dispatch/ is engram::dispatch): it
sits below engram::core, not inside it. Nested namespaces are the
library's own.

Usage: check-layers.py BUILD_DIR   (exit 1 and one line per violation)
       check-layers.py --self-test
"""

import json
import os
import re
import subprocess
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
NAMESPACE = re.compile(r"^\s*namespace\s+(engram(?:::\w+)*)\s*\{", re.M)
# Namespaces a folder may open besides its own, and why.
ALSO_OPENS = {
    # The CUDA library implements the seam that kernels/gpu_device.h declares.
    "kernels/cuda": {"engram::kernels"},
}
SOURCE_SUFFIXES = (".h", ".cc", ".cu", ".cuh")


def load_model(build_dir):
    """Returns (targets, source_root): targets maps a target name to
    {"folder", "sources", "deps"} for the libraries and executables of the
    project (not of tests/ and bench/, which may use any layer)."""
    reply = os.path.join(build_dir, ".cmake", "api", "v1", "reply")
    if not os.path.isdir(reply):
        # CMake answers a query that existed when its run began: the first
        # configure of a build folder writes the query, a second answers it.
        subprocess.run(["cmake", build_dir], check=True,
                       stdout=subprocess.DEVNULL)
    if not os.path.isdir(reply):
        sys.exit(f"check-layers: no CMake file API reply in {reply}")
    index = max(f for f in os.listdir(reply) if f.startswith("index-"))
    with open(os.path.join(reply, index)) as f:
        index_json = json.load(f)
    codemodel_file = next(
        o["jsonFile"] for o in index_json["objects"]
        if o["kind"] == "codemodel")
    with open(os.path.join(reply, codemodel_file)) as f:
        codemodel = json.load(f)
    source_root = codemodel["paths"]["source"]
    by_id = {}
    for ref in codemodel["configurations"][0]["targets"]:
        with open(os.path.join(reply, ref["jsonFile"])) as f:
            by_id[ref["id"]] = json.load(f)
    targets = {}
    for t in by_id.values():
        targets[t["name"]] = {
            "type": t["type"],
            "folder": t["paths"]["source"],
            "sources": [s["path"] for s in t.get("sources", [])],
            "deps": [by_id[d["id"]]["name"] for d in t.get("dependencies", [])
                     if d["id"] in by_id],
        }
    return targets, source_root


def closure(targets, name):
    seen, stack = set(), [name]
    while stack:
        for dep in targets[stack.pop()]["deps"]:
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def owners(targets):
    """Maps each folder that holds a library to that library: one library a
    folder (an executable beside it, such as a tool's main, owns no
    headers)."""
    folder_owner = {}
    for name, t in sorted(targets.items()):
        if not t.get("type", "STATIC_LIBRARY").endswith("_LIBRARY"):
            continue
        if t["folder"].startswith(("tests", "bench")):
            continue
        own = [s for s in t["sources"] if not s.startswith(("build", "/"))]
        if t["sources"] and not own:
            continue  # generated code only (the proto libraries)
        folders = {os.path.dirname(s) for s in own
                   if s.endswith(SOURCE_SUFFIXES)} or {t["folder"]}
        for folder in folders:
            if folder in folder_owner:
                sys.exit(f"check-layers: {folder} holds two libraries, "
                         f"{folder_owner[folder]} and {name}")
            folder_owner[folder] = name
    return folder_owner


def violations(targets, folder_owner, read):
    """Yields "file: includes header (library) but target does not link it"
    for every project source of a library or executable outside tests/ and
    bench/, and for every header of a library's folder."""
    checked = []
    for name, t in sorted(targets.items()):
        if t["folder"].startswith(("tests", "bench")):
            continue
        files = [s for s in t["sources"] if s.endswith(SOURCE_SUFFIXES)
                 and not s.startswith(("build", "/"))]
        for folder, owner in sorted(folder_owner.items()):
            if owner == name:
                files += [h for h in read.headers(folder) if h not in files]
        checked.append((name, files))
    for name, files in checked:
        allowed = closure(targets, name) | {name}
        for path in files:
            for header in INCLUDE.findall(read.text(path)):
                folder = os.path.dirname(header)
                owner = folder_owner.get(folder)
                if owner is not None and owner not in allowed:
                    yield (f"{path}: includes {header} ({owner}), which "
                           f"{name} does not link")


def expected_namespace(folder):
    parts = folder.split("/")
    if parts[0] == "core" and len(parts) > 1:
        parts = parts[1:]
    return "engram::" + "::".join(parts)


def namespace_violations(folder_owner, sources, read):
    """Yields "file: opens namespace N, not F" for every file of a library's
    folder that opens an engram namespace other than its folder's (or one
    nested in it)."""
    for folder, owner in sorted(folder_owner.items()):
        own = expected_namespace(folder)
        allowed = ALSO_OPENS.get(folder, set())
        files = sorted(set(read.headers(folder)) |
                       {s for s in sources.get(owner, [])
                        if os.path.dirname(s) == folder})
        for path in files:
            for opened in NAMESPACE.findall(read.text(path)):
                if opened == own or opened.startswith(own + "::"):
                    continue
                if opened in allowed:
                    continue
                yield f"{path}: opens namespace {opened}, not {own}"


class Tree:
    def __init__(self, root):
        self.root = root

    def text(self, path):
        with open(os.path.join(self.root, path), errors="replace") as f:
            return f.read()

    def headers(self, folder):
        full = os.path.join(self.root, folder)
        return sorted(os.path.join(folder, f) for f in os.listdir(full)
                      if f.endswith((".h", ".cuh")))


class FakeTree:
    def __init__(self, files):
        self.files = files

    def text(self, path):
        return self.files[path]

    def headers(self, folder):
        return sorted(p for p in self.files
                      if os.path.dirname(p) == folder and p.endswith(".h"))


def self_test():
    targets = {
        "low": {"folder": "low", "sources": ["low/a.cc"], "deps": []},
        "mid": {"folder": "mid", "sources": ["mid/b.cc"], "deps": ["low"]},
        "top": {"folder": "top", "sources": ["top/c.cc"], "deps": ["mid"]},
    }
    files = {
        "low/a.h": "", "low/a.cc": '#include "low/a.h"\n',
        "mid/b.h": '#include "low/a.h"\n', "mid/b.cc": '#include "mid/b.h"\n',
        "top/c.cc": '#include "low/a.h"\n#include "mid/b.h"\n',
    }
    folder_owner = owners(targets)
    found = list(violations(targets, folder_owner, FakeTree(files)))
    assert found == [], found  # transitive links count
    files["low/a.cc"] += '#include "mid/b.h"\n'  # reaching up
    found = list(violations(targets, folder_owner, FakeTree(files)))
    assert len(found) == 1 and "low/a.cc" in found[0], found
    files["low/a.cc"] = ""
    files["low/a.h"] = '#include "top/c.h"\n'  # a header reaching up
    files["top/c.h"] = ""
    found = list(violations(targets, folder_owner, FakeTree(files)))
    assert len(found) == 1 and "low/a.h" in found[0], found
    sources = {n: t["sources"] for n, t in targets.items()}
    files["low/a.h"] = "namespace engram::low {\nnamespace {\n"
    files["mid/b.cc"] = "namespace engram::mid::detail {\n"
    found = list(namespace_violations(folder_owner, sources, FakeTree(files)))
    assert found == [], found  # its own and nested ones
    files["mid/b.cc"] = "namespace engram::low {\n"  # another folder's
    found = list(namespace_violations(folder_owner, sources, FakeTree(files)))
    assert len(found) == 1 and "mid/b.cc" in found[0], found
    assert expected_namespace("core/dispatch/testing") == \
        "engram::dispatch::testing"
    print("check-layers: self-test passed")


def main(argv):
    if argv[1:] == ["--self-test"]:
        self_test()
        return 0
    if len(argv) != 2:
        sys.exit(__doc__)
    targets, root = load_model(argv[1])
    folder_owner = owners(targets)
    tree = Tree(root)
    sources = {n: t["sources"] for n, t in targets.items()}
    found = list(violations(targets, folder_owner, tree))
    found += namespace_violations(folder_owner, sources, tree)
    for line in found:
        print(line)
    libraries = sorted(set(folder_owner.values()))
    print(f"check-layers: {len(found)} violation(s) in "
          f"{len(libraries)} libraries: {' '.join(libraries)}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
