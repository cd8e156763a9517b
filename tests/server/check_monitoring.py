#!/usr/bin/env python3
"""Checks deploy/monitoring/ against docs/metrics.md (ctest label
observability): the Grafana dashboard is valid JSON with unique panel ids and
a query in every panel, and every metric the dashboard and the alerting rules
query is one docs/metrics.md documents. Usage: check_monitoring.py REPO_ROOT
"""
import json
import pathlib
import re
import sys

METRIC = re.compile(r"\b((?:engram|process)_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def documented(doc):
    return set(re.findall(r"`((?:engram|process)_[a-z0-9_]+)`", doc))


def base_names(expr, known):
    names = set()
    for name in METRIC.findall(expr):
        if name not in known:
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in known:
                    name = name[: -len(suffix)]
        names.add(name)
    return names


def main():
    root = pathlib.Path(sys.argv[1])
    known = documented((root / "docs/metrics.md").read_text())
    problems = []
    if len(known) < 20:
        problems.append(f"docs/metrics.md documents only {len(known)} metrics")

    dashboard = json.loads(
        (root / "deploy/monitoring/grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        problems.append("dashboard panel ids repeat")
    queried = set()
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        if not panel.get("targets"):
            problems.append(f"panel '{panel['title']}' has no query")
        for target in panel.get("targets", []):
            for name in base_names(target["expr"], known):
                queried.add(name)
                if name not in known:
                    problems.append(
                        f"dashboard panel '{panel['title']}' queries {name}, "
                        "which docs/metrics.md does not document")

    rules = (root / "deploy/monitoring/alerts.yaml").read_text()
    for name in base_names(rules, known):
        if name not in known:
            problems.append(
                f"alerts.yaml uses {name}, which docs/metrics.md does not "
                "document")

    for p in problems:
        print("check_monitoring:", p, file=sys.stderr)
    if not problems:
        print(f"check_monitoring: {len(queried)} metrics on the dashboard, "
              f"{len(known)} documented")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
