#!/usr/bin/env python3
"""Offline checks of the rendered Kubernetes manifests and the Dockerfile.

Run by scripts/check-deploy.sh with the deploy tools' virtualenv (it needs
PyYAML, jsonschema and kubernetes-validate). For each rendered overlay
(`kubectl kustomize deploy/kubernetes/overlays/<name>`) it checks:

- every built-in object against the Kubernetes OpenAPI schemas with
  kubernetes-validate in strict mode (unknown fields rejected), for each
  --k8s-version; an object whose schema is missing fails (the command line
  tool would only warn);
- the ServiceMonitor (a CRD, so no schema ships with kubernetes-validate) by a
  weaker means: SERVICE_MONITOR_SCHEMA below, the fields we use with their
  types, no others;
- that the objects agree with each other and with the server: probes on the
  gRPC health service at the port of --grpc_address, readiness on the real
  service name (server/server.h), terminationGracePeriodSeconds > preStop
  sleep + --drain_deadline, liveness tolerating the drain, --worker_threads
  equal to the CPU request, the security context, selectors, the HPA's metric
  and the prometheus-adapter rule, one scraped Service;
- shared mode: --data_dir on a ReadWriteMany PersistentVolumeClaim of the
  rendering, and --catalog naming every member of the etcd StatefulSet, whose
  headless Service, member list, size (odd, >= 3) and PodDisruptionBudget
  (keeps a quorum) agree with it; the etcd objects and the engram ones never
  select each other's pods;
- the Dockerfile's ports, user and HEALTHCHECK against the same values.

With --server and --cli it then starts the real engram-server with the
rendered ConfigMap as its --flagfile (addresses moved to 127.0.0.1:0, the
data directory to a temporary folder, the catalog left out), asks
each probe's health service through `engram-cli health`, reads the HPA's
metric from /metrics, and checks that SIGTERM drains and exits 0.

--self-test breaks a good rendering in known ways and fails unless each break
is caught, so the checks above are known to be able to fail.
"""

import argparse
import copy
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import jsonschema
import yaml
from kubernetes_validate import utils as kv

HPA_METRIC = "engram_inflight_requests"
# Kinds the base must render, by (apiVersion, kind).
EXPECTED_KINDS = {
    ("v1", "ConfigMap"): 1,
    # engram's ClusterIP and headless Services, etcd's headless one.
    ("v1", "Service"): 3,
    ("v1", "PersistentVolumeClaim"): 1,
    ("apps/v1", "Deployment"): 1,
    ("apps/v1", "StatefulSet"): 1,
    # engram's and etcd's.
    ("policy/v1", "PodDisruptionBudget"): 2,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): 1,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): 1,
}
CRD_GROUPS = ("monitoring.coreos.com/",)

_DURATION = r"^(0|([0-9]+(ms|s|m|h))+)$"
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
# The ServiceMonitor fields this project uses, after the Prometheus Operator's
# CRD (monitoring.coreos.com/v1): required ones, their types and shapes, and
# nothing else, so that a misspelt field fails here as it would not in a
# cluster that prunes unknown fields silently.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string",
                         "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _LABELS,
                "annotations": _LABELS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": _LABELS,
                        "matchExpressions": {"type": "array"},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array",
                                       "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string",
                                         "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string",
                                              "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


class Context:
    """What the manifests are checked against: the server and the image."""

    def __init__(self, repo, k8s_versions):
        self.repo = repo
        self.k8s_versions = k8s_versions
        header = read(os.path.join(repo, "server", "server.h"))
        m = re.search(r'kServiceName\[\]\s*=\s*"([^"]+)"', header)
        if not m:
            raise SystemExit("check_manifests: no kServiceName in server.h")
        self.service_name = m.group(1)
        self.adapter_values = yaml.safe_load(read(os.path.join(
            repo, "deploy", "kubernetes", "prometheus-adapter-values.yaml")))
        self.dockerfile = read(os.path.join(repo, "Dockerfile"))
        self.service_config = json.loads(read(os.path.join(
            repo, "deploy", "grpc-service-config.json")))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def parse_flags(text):
    """The --name=value lines of an absl flagfile, as a dict."""
    flags = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"--([A-Za-z0-9_]+)=(.*)", line)
        if not m:
            raise ValueError(f"flagfile line is not --name=value: {line!r}")
        flags[m.group(1)] = m.group(2)
    return flags


def absl_seconds(text):
    """Seconds in an absl duration such as 20s, 1m30s or 500ms."""
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"([0-9]*\.?[0-9]+)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not an absl duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def port_of(address):
    m = re.fullmatch(r".*:([0-9]+)", address)
    if not m:
        raise ValueError(f"address without a port: {address!r}")
    return int(m.group(1))


def memory_bytes(quantity):
    """A Kubernetes memory quantity (8Gi, 512Mi, 1G, 1000) in bytes."""
    q = str(quantity)
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(float(q[:-len(suffix)]) * factor)
    return int(q)


# What the process needs beside its resident data and the requests it has
# admitted: code, gRPC's buffers, the worker pool's scratch, the allocator.
MEMORY_HEADROOM = 1 << 30


def cpu_cores(quantity):
    q = str(quantity)
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v
                                  for k, v in selector.items())


def match_labels(obj):
    """The matchLabels of a Deployment, StatefulSet or PDB selector."""
    return obj.get("spec", {}).get("selector", {}).get("matchLabels")


def one(docs, kind, errors):
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        errors.append(f"expected one {kind}, found {len(found)}")
        return None
    return found[0]


def check_schemas(docs, ctx):
    errors = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("apiVersion", "").startswith(CRD_GROUPS):
            validator = jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA)
            for e in validator.iter_errors(doc):
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{name}: CRD schema: {path}: {e.message}")
            continue
        for version in ctx.k8s_versions:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errors.append(f"{name}: Kubernetes {version} strict: "
                              f"{path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                errors.append(f"{name}: {e.message}")
    return errors


def check_overlay(overlay, docs, ctx):
    """Consistency checks; returns a list of error strings."""
    errors = check_schemas(docs, ctx)
    counts = {}
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        counts[key] = counts.get(key, 0) + 1
    if counts != EXPECTED_KINDS:
        errors.append(f"rendered kinds {sorted(counts.items())} != "
                      f"{sorted(EXPECTED_KINDS.items())}")

    deployment = one(docs, "Deployment", errors)
    config_map = one(docs, "ConfigMap", errors)
    hpa = one(docs, "HorizontalPodAutoscaler", errors)
    monitor = one(docs, "ServiceMonitor", errors)
    etcd = one(docs, "StatefulSet", errors)
    services = [d for d in docs if d.get("kind") == "Service"]
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    claims = {d["metadata"]["name"]: d for d in docs
              if d.get("kind") == "PersistentVolumeClaim"}
    if None in (deployment, config_map, hpa, monitor, etcd):
        return errors

    pod = deployment["spec"]["template"]
    pod_spec = pod["spec"]
    pod_labels = pod["metadata"].get("labels", {})
    etcd_labels = etcd["spec"]["template"]["metadata"].get("labels", {})
    # engram's Services and PDB are the ones that select its pods; etcd's
    # Service is the StatefulSet's serviceName, its PDB the one that selects
    # the etcd pods. Anything else selects nothing of ours.
    engram_services = [s for s in services
                       if selects(s["spec"].get("selector"), pod_labels)]
    etcd_service_name = etcd["spec"].get("serviceName")
    etcd_services = [s for s in services
                     if s["metadata"]["name"] == etcd_service_name
                     and s not in engram_services]
    for s in services:
        if s not in engram_services and s not in etcd_services:
            errors.append(f"Service {s['metadata']['name']} neither selects "
                          f"the engram pods nor is the etcd StatefulSet's "
                          f"serviceName")
    pdb_of = {}
    for p in pdbs:
        who = [w for w, labels in (("engram", pod_labels),
                                   ("etcd", etcd_labels))
               if selects(match_labels(p), labels)]
        if len(who) != 1:
            errors.append(f"PodDisruptionBudget {p['metadata']['name']} must "
                          f"select either the engram pods or the etcd pods "
                          f"(it selects {' and '.join(who) or 'neither'})")
        elif who[0] in pdb_of:
            errors.append(f"two PodDisruptionBudgets select the {who[0]} pods")
        else:
            pdb_of[who[0]] = p
    pdb = pdb_of.get("engram")
    if pdb is None:
        errors.append("no PodDisruptionBudget selects the engram pods")
    containers = pod_spec.get("containers", [])
    if len(containers) != 1:
        return errors + [f"expected one container, found {len(containers)}"]
    c = containers[0]

    # The flags: a --flagfile in a volume mounted from the rendered ConfigMap.
    flagfiles = [a.split("=", 1)[1] for a in c.get("args", [])
                 if a.startswith("--flagfile=")]
    if len(flagfiles) != 1:
        return errors + ["the container must pass exactly one --flagfile"]
    mount_dir, key = os.path.split(flagfiles[0])
    mounts = [m for m in c.get("volumeMounts", [])
              if m.get("mountPath") == mount_dir]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    volume = volumes.get(mounts[0]["name"]) if len(mounts) == 1 else None
    if (volume is None or volume.get("configMap", {}).get("name")
            != config_map["metadata"]["name"]):
        return errors + [f"{mount_dir} is not a volume of ConfigMap "
                         f"{config_map['metadata']['name']}"]
    if key not in config_map.get("data", {}):
        return errors + [f"ConfigMap has no key {key!r}"]
    try:
        # Absent flags take engram-server's defaults.
        flags = parse_flags(config_map["data"][key])
        grpc_port = port_of(flags.get("grpc_address", "0.0.0.0:50051"))
        metrics_port = port_of(flags.get("metrics_address", "0.0.0.0:9464"))
        drain = absl_seconds(flags.get("drain_deadline", "20s"))
    except ValueError as e:
        return errors + [f"flags: {e}"]

    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    if ports != {"grpc": grpc_port, "metrics": metrics_port}:
        errors.append(f"containerPorts {ports} != flags' grpc {grpc_port} "
                      f"and metrics {metrics_port}")

    # Probes: native gRPC health checks on the server's port and services.
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = c.get(probe_name)
        if not probe or "grpc" not in probe:
            errors.append(f"{probe_name} must be a grpc probe")
            continue
        if probe["grpc"].get("port") != grpc_port:
            errors.append(f"{probe_name} port {probe['grpc'].get('port')} != "
                          f"--grpc_address port {grpc_port}")
        service = probe["grpc"].get("service", "")
        if service not in ("", ctx.service_name):
            errors.append(f"{probe_name} asks for health service "
                          f"{service!r}, not '' or {ctx.service_name!r}")
    readiness = c.get("readinessProbe", {}).get("grpc", {})
    if readiness.get("service") != ctx.service_name:
        errors.append(f"readinessProbe must ask for {ctx.service_name!r}")

    # Drain: grace > preStop sleep + drain deadline; liveness outlasts both,
    # since health reports NOT_SERVING throughout the drain.
    pre_stop = c.get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds")
    if sleep is None:
        errors.append("preStop must be a sleep (lets endpoints update)")
        sleep = 0
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    if not grace > sleep + drain:
        errors.append(f"terminationGracePeriodSeconds {grace} must exceed "
                      f"preStop {sleep}s + --drain_deadline {drain:g}s")
    live = c.get("livenessProbe", {})
    tolerated = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
    if tolerated < sleep + drain:
        errors.append(f"livenessProbe tolerates {tolerated}s of failures, "
                      f"less than preStop + drain ({sleep + drain:g}s)")

    # Security context.
    psc = pod_spec.get("securityContext", {})
    errors += check_security_context("", pod_spec, c)

    # Resources, and a worker pool sized by the CPU request.
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                errors.append(f"resources.{kind}.{r} missing")
    cpu = res.get("requests", {}).get("cpu")
    if cpu is not None and flags.get("worker_threads") != str(
            int(cpu_cores(cpu))):
        errors.append(f"--worker_threads={flags.get('worker_threads')} must "
                      f"equal the CPU request {cpu}")
    # Memory: the resident budget and the admitted request bytes both fit
    # under the limit with headroom, so the budget refuses an upload
    # (RESOURCE_EXHAUSTED) before the kernel OOM-kills the pod.
    limit = res.get("limits", {}).get("memory")
    if limit is not None:
        resident = int(flags.get("resident_memory_bytes", 8 << 30))
        inflight = int(flags.get("max_inflight_bytes", 4 << 30))
        need = resident + inflight + MEMORY_HEADROOM
        if memory_bytes(limit) < need:
            errors.append(
                f"memory limit {limit} is below --resident_memory_bytes "
                f"({resident >> 20} MiB) + --max_inflight_bytes "
                f"({inflight >> 20} MiB) + {MEMORY_HEADROOM >> 20} MiB "
                f"headroom: the pod would be OOM-killed before the budget "
                f"refuses anything")
    gpus = res.get("limits", {}).get("nvidia.com/gpu")
    tolerations = [t.get("key") for t in pod_spec.get("tolerations", [])]
    if overlay == "gpu":
        if str(gpus) != "1":
            errors.append("gpu overlay must limit nvidia.com/gpu to 1")
        if "nvidia.com/gpu" not in tolerations:
            errors.append("gpu overlay must tolerate the nvidia.com/gpu taint")
        if not pod_spec.get("nodeSelector"):
            errors.append("gpu overlay must select the GPU pool's nodes")
    elif gpus is not None or "nvidia.com/gpu" in tolerations:
        errors.append(f"{overlay} overlay must not ask for a GPU")
    if "replicas" in deployment["spec"]:
        errors.append("Deployment must leave replicas to the HPA")
    errors += check_image(c.get("image", ""))

    # Services: two select the pods, the headless one for client-side
    # balancing, and exactly one Service offers the scraped port.
    headless = [s for s in engram_services
                if s["spec"].get("clusterIP") == "None"]
    cluster_ip = [s for s in engram_services
                  if s["spec"].get("clusterIP") != "None"]
    if len(headless) != 1 or len(cluster_ip) != 1:
        errors.append("expected one headless and one ClusterIP Service "
                      "selecting the engram pods")
    for s in engram_services:
        sname = s["metadata"]["name"]
        if selects(s["spec"].get("selector"), etcd_labels):
            errors.append(f"Service {sname} selects the etcd pods too")
        grpc = [p for p in s["spec"].get("ports", [])
                if p.get("name") == "grpc"]
        if len(grpc) != 1 or grpc[0].get("targetPort") not in ("grpc",
                                                               grpc_port):
            errors.append(f"Service {sname} must route port 'grpc' to the "
                          f"container's gRPC port")
    endpoint_ports = [e.get("port") for e in monitor["spec"]["endpoints"]]
    selector = monitor["spec"]["selector"].get("matchLabels", {})
    scraped = [s for s in services
               if selects(selector, s["metadata"].get("labels", {}))
               and any(p.get("name") in endpoint_ports
                       for p in s["spec"].get("ports", []))]
    if len(scraped) != 1:
        errors.append(f"ServiceMonitor scrapes {len(scraped)} Services; each "
                      f"pod must be scraped through exactly one")
    else:
        target = [p.get("targetPort") for p in scraped[0]["spec"]["ports"]
                  if p.get("name") in endpoint_ports]
        if target not in (["metrics"], [metrics_port]):
            errors.append("the scraped port must target the metrics port")

    # PDB and HPA.
    if pdb is not None and selects(match_labels(pdb), etcd_labels):
        errors.append("the engram PodDisruptionBudget selects the etcd pods "
                      "too")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref.get("kind"), ref.get("name")) != ("Deployment",
                                              deployment["metadata"]["name"]):
        errors.append("HPA must scale the Deployment")
    if hpa["spec"].get("minReplicas", 1) < 2:
        errors.append("HPA minReplicas must be >= 2 (PDB, rolling updates)")
    names = [m.get("pods", {}).get("metric", {}).get("name")
             for m in hpa["spec"].get("metrics", []) if m.get("type") == "Pods"]
    if names != [HPA_METRIC]:
        errors.append(f"HPA must scale on the Pods metric {HPA_METRIC}")
    served = [r.get("name", {}).get("as") for r in
              ctx.adapter_values.get("rules", {}).get("custom", [])]
    if HPA_METRIC not in served:
        errors.append(f"prometheus-adapter-values.yaml serves no {HPA_METRIC}")

    # Shared mode: the data directory and the catalog.
    errors += check_data_dir(flags, c, pod_spec, claims)
    errors += check_etcd(flags, etcd, etcd_services, pdb_of.get("etcd"))
    # The etcd objects carry labels of their own: nothing of engram's may
    # select them (the Deployment would adopt, the Services route to, the
    # ServiceMonitor scrape, the PDB count the etcd pods).
    if selects(match_labels(deployment), etcd_labels):
        errors.append("the Deployment's selector matches the etcd pods")
    if selects(match_labels(etcd), pod_labels):
        errors.append("the etcd StatefulSet's selector matches the engram "
                      "pods")
    for s in etcd_services:
        if selects(selector, s["metadata"].get("labels", {})):
            errors.append(f"the ServiceMonitor selects the etcd Service "
                          f"{s['metadata']['name']}")

    errors += check_dockerfile(ctx.dockerfile, grpc_port, metrics_port,
                               psc.get("runAsUser"))
    return errors


def check_security_context(who, pod_spec, c):
    """Non-root, read-only root filesystem, no privilege, no capability.
    `who` prefixes the errors ("" for the engram pod)."""
    errors = []
    psc = pod_spec.get("securityContext", {})
    csc = c.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        errors.append(f"{who}pod must set runAsNonRoot: true and a non-zero "
                      f"runAsUser")
    if csc.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{who}container root filesystem must be read-only")
    if csc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{who}allowPrivilegeEscalation must be false")
    if csc.get("privileged"):
        errors.append(f"{who}container must not be privileged")
    caps = csc.get("capabilities", {})
    if caps.get("drop") != ["ALL"] or caps.get("add"):
        errors.append(f"{who}capabilities must drop ALL and add none")
    return errors


def check_image(image):
    if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
        return [f"image {image!r} needs an explicit tag"]
    return []


def mount_of(path, mounts):
    """The volumeMount whose mountPath holds `path` (the deepest one)."""
    best = None
    for m in mounts:
        mount_path = m.get("mountPath", "").rstrip("/")
        if path == mount_path or path.startswith(mount_path + "/"):
            if best is None or len(mount_path) > len(
                    best["mountPath"].rstrip("/")):
                best = m
    return best


def check_data_dir(flags, c, pod_spec, claims):
    """--data_dir is on a ReadWriteMany claim every replica mounts, writable
    by the pod's user; shared mode needs both it and --catalog."""
    data_dir = flags.get("data_dir", "")
    if not data_dir or not flags.get("catalog"):
        # Without the catalog, replicas writing one folder would overwrite
        # each other's manifests; without the folder, each pod keeps its
        # writes to itself (and the server refuses a catalog alone).
        return ["the flags must set both --data_dir and --catalog: the HPA "
                "runs several replicas, and only shared mode gives them the "
                "same collections"]
    mount = mount_of(data_dir, c.get("volumeMounts", []))
    if mount is None:
        return [f"--data_dir={data_dir} is on no volume the container mounts"]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    source = volumes.get(mount.get("name"), {}).get("persistentVolumeClaim")
    if source is None:
        return [f"--data_dir={data_dir} is on volume {mount.get('name')!r}, "
                f"which is no PersistentVolumeClaim: writes would not outlive "
                f"the pod nor reach the other replicas"]
    errors = []
    claim = claims.get(source.get("claimName"))
    if claim is None:
        errors.append(f"--data_dir's claim {source.get('claimName')!r} is "
                      f"not in the rendering")
    elif "ReadWriteMany" not in claim["spec"].get("accessModes", []):
        errors.append(f"PersistentVolumeClaim {claim['metadata']['name']} "
                      f"must be ReadWriteMany: every replica mounts "
                      f"--data_dir at once, on any node")
    if mount.get("readOnly") or source.get("readOnly"):
        errors.append(f"--data_dir={data_dir} is mounted read-only")
    if not pod_spec.get("securityContext", {}).get("fsGroup"):
        errors.append("the pod must set fsGroup, so that its non-root user "
                      "can write the data volume")
    return errors


def container_port(container, name):
    ports = [p.get("containerPort") for p in container.get("ports", [])
             if p.get("name") == name]
    return ports[0] if len(ports) == 1 else None


def host_port(endpoint):
    """("host", port) of "host:port" (a URL's scheme and path dropped)."""
    m = re.fullmatch(r"(?:[a-z]+://)?([^/:]+):([0-9]+)/?", endpoint)
    return (m.group(1), int(m.group(2))) if m else (endpoint, None)


def check_etcd(flags, sts, services, pdb):
    """--catalog against the etcd StatefulSet, its Service and its PDB."""
    errors = []
    name = sts["metadata"]["name"]
    service_name = sts["spec"].get("serviceName")
    replicas = sts["spec"].get("replicas", 1)
    members = [f"{name}-{i}" for i in range(replicas)]
    template = sts["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    if replicas < 3 or replicas % 2 == 0:
        errors.append(f"etcd StatefulSet replicas {replicas} must be odd and "
                      f">= 3: a quorum of replicas//2 + 1 must outlive the "
                      f"loss of a member")
    if sts["spec"].get("podManagementPolicy") != "Parallel":
        errors.append("etcd StatefulSet must start its members in Parallel: "
                      "no member turns ready alone, so OrderedReady would "
                      "wait on the first for ever")
    containers = template["spec"].get("containers", [])
    if len(containers) != 1:
        return errors + [f"etcd pod: expected one container, found "
                         f"{len(containers)}"]
    c = containers[0]
    client_port = container_port(c, "client")
    peer_port = container_port(c, "peer")
    if client_port is None or peer_port is None:
        return errors + ["etcd container must name its ports client and peer"]

    # The Service: headless (one DNS name per member), the StatefulSet's
    # serviceName, published before the members are ready.
    if len(services) != 1:
        errors.append(f"no Service {service_name!r} (the etcd StatefulSet's "
                      f"serviceName) in the rendering")
    else:
        s = services[0]
        if s["spec"].get("clusterIP") != "None":
            errors.append(f"etcd Service {service_name} must be headless "
                          f"(clusterIP: None): members are reached by name")
        if s["spec"].get("publishNotReadyAddresses") is not True:
            errors.append(f"etcd Service {service_name} must publish "
                          f"not-ready addresses: members find each other "
                          f"before any is ready")
        if not selects(s["spec"].get("selector"), labels):
            errors.append(f"etcd Service {service_name} does not select the "
                          f"etcd pods")
        client = [p for p in s["spec"].get("ports", [])
                  if p.get("name") == "client"]
        if len(client) != 1 or client[0].get("port") != client_port:
            errors.append(f"etcd Service {service_name} must offer port "
                          f"'client' {client_port}")

    # --catalog: every endpoint a member, every member an endpoint.
    m = re.fullmatch(r"etcd://([^/]+)/(.+)", flags.get("catalog", ""))
    if "catalog" not in flags:
        pass  # check_data_dir says so
    elif not m:
        errors.append(f"--catalog={flags.get('catalog', '')} is not "
                      f"etcd://HOST:PORT[,HOST:PORT...]/PREFIX")
    else:
        named = set()
        for endpoint in m.group(1).split(","):
            host, port = host_port(endpoint)
            # <pod>.<service>, optionally followed by the namespace and
            # the cluster domain.
            member = host.split(".")[0]
            if (member not in members or host.split(".")[1:2] != [service_name]
                    or port != client_port):
                errors.append(f"--catalog endpoint {endpoint} is not a member "
                              f"of StatefulSet {name} "
                              f"(<pod>.{service_name}:{client_port})")
            named.add(member)
        missing = [p for p in members if p not in named]
        if missing:
            errors.append(f"--catalog leaves out etcd members "
                          f"{', '.join(missing)}: a replica would not turn "
                          f"to them when the members it names fail")

    # The members bootstrap from --initial-cluster: exactly the pods.
    args = c.get("command", []) + c.get("args", [])
    initial = [a.split("=", 1)[1] for a in args
               if a.startswith("--initial-cluster=")]
    peers = {}
    for entry in (initial[0].split(",") if len(initial) == 1 else []):
        member, _, url = entry.partition("=")
        peers[member] = host_port(url)
    if sorted(peers) != sorted(members) or any(
            h.split(".")[:2] != [p, service_name] or port != peer_port
            for p, (h, port) in peers.items()):
        errors.append(f"etcd --initial-cluster must name each of {members} "
                      f"at http://<pod>.{service_name}:{peer_port}")

    # A disruption may take members only while a quorum stays.
    if pdb is None:
        errors.append("no PodDisruptionBudget selects the etcd pods")
    else:
        down = pdb_allows_down(pdb["spec"], replicas)
        quorum = replicas // 2 + 1
        if down is None or replicas - down < quorum:
            errors.append(f"etcd PodDisruptionBudget lets "
                          f"{'any number of' if down is None else down} of "
                          f"{replicas} members go; the quorum is {quorum}")

    # The pod itself: as strict as the server's where etcd allows it.
    errors += check_security_context("etcd ", template["spec"], c)
    errors += check_image(c.get("image", ""))
    res = c.get("resources", {})
    if not res.get("requests") or res.get("requests") != res.get("limits"):
        errors.append("etcd resources: requests must equal limits "
                      "(Guaranteed QoS)")
    probe = c.get("readinessProbe", {}).get("httpGet", {})
    if probe.get("path") != "/health" or probe.get("port") not in (
            "client", client_port):
        errors.append("etcd readinessProbe must GET /health on the client "
                      "port")
    data = [a.split("=", 1)[1] for a in args if a.startswith("--data-dir=")]
    mount = mount_of(data[0], c.get("volumeMounts", [])) if data else None
    templates = {t["metadata"]["name"]: t for t in
                 sts["spec"].get("volumeClaimTemplates", [])}
    if mount is None or mount.get("name") not in templates:
        errors.append("etcd --data-dir must be on a volumeClaimTemplate: a "
                      "member's data must outlive its pod")
    return errors


def pdb_allows_down(spec, replicas):
    """How many of `replicas` pods a PDB spec lets go at once; None when it
    sets no bound. Percentages round up, as Kubernetes rounds them."""
    def scaled(value):
        if isinstance(value, str) and value.endswith("%"):
            return -(-replicas * int(value[:-1]) // 100)
        return int(value)
    if "maxUnavailable" in spec:
        return scaled(spec["maxUnavailable"])
    if "minAvailable" in spec:
        return max(replicas - scaled(spec["minAvailable"]), 0)
    return None


def check_dockerfile(text, grpc_port, metrics_port, uid):
    errors = []
    text = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    # The last stage is the image.
    last = max(i for i, line in enumerate(lines)
               if line.upper().startswith("FROM "))
    image = lines[last:]
    exposed = set()
    for line in image:
        if line.upper().startswith("EXPOSE "):
            exposed |= {int(p.split("/")[0]) for p in line.split()[1:]}
    if exposed != {grpc_port, metrics_port}:
        errors.append(f"Dockerfile EXPOSE {sorted(exposed)} != "
                      f"[{grpc_port}, {metrics_port}]")
    users = [line.split()[1] for line in image
             if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] != str(uid) or uid in (0, None):
        errors.append(f"Dockerfile USER {users[-1:]} must be the pod's "
                      f"non-root runAsUser {uid}")
    health = [line for line in image if line.upper().startswith("HEALTHCHECK ")]
    if (len(health) != 1 or '"engram-cli", "health"' not in health[0]
            or f"127.0.0.1:{grpc_port}" not in health[0]):
        errors.append("Dockerfile needs one HEALTHCHECK running "
                      f"engram-cli health on 127.0.0.1:{grpc_port}")
    return errors


# RPCs that change nothing on the server: a retry after an UNAVAILABLE
# (a draining pod, a pod that died mid-call) cannot apply anything twice.
READ_ONLY_METHODS = {
    "BatchCosine", "Spread", "GetStats", "SearchCollection",
    "ListCollections", "DescribeCollection", "ListGraphs", "DescribeGraph",
}


def check_service_config(config, service_name):
    """The gRPC service config that docs/deploy.md gives clients: every
    read-only RPC retried on UNAVAILABLE, no write retried (one that died
    after its commit would be applied twice)."""
    errors = []
    if config.get("loadBalancingConfig") != [{"round_robin": {}}]:
        errors.append("service config must pick round_robin")
    if config.get("healthCheckConfig", {}).get("serviceName") != service_name:
        errors.append(f"service config must health-check {service_name!r}")
    retried = set()
    for m in config.get("methodConfig", []):
        policy = m.get("retryPolicy")
        if not policy:
            continue
        for name in m.get("name", []):
            if name.get("service") != service_name:
                continue
            method = name.get("method")
            if method not in READ_ONLY_METHODS:
                errors.append(f"service config retries "
                              f"{method or 'every method'} of {service_name}, "
                              f"which may change state: a retry could apply "
                              f"it twice")
                continue
            retried.add(method)
            codes = policy.get("retryableStatusCodes", [])
            if "UNAVAILABLE" not in codes:
                errors.append(f"{method} must be retried on UNAVAILABLE")
            # gRPC's server cancels a call that lands in the instant its
            # shutdown begins; only a server ever sends that CANCELLED (a
            # client's own cancellation is never retried).
            if "CANCELLED" not in codes:
                errors.append(f"{method} must be retried on CANCELLED")
            if not 2 <= policy.get("maxAttempts", 0) <= 5:
                errors.append("retryPolicy.maxAttempts must be 2..5 (gRPC "
                              "caps it at 5)")
    missing = READ_ONLY_METHODS - retried
    if missing:
        errors.append(f"service config must retry UNAVAILABLE on "
                      f"{', '.join(sorted(missing))}")
    return errors


def probe_services(docs):
    deployment = next(d for d in docs if d.get("kind") == "Deployment")
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    return sorted({c[p]["grpc"].get("service", "") for p in
                   ("startupProbe", "readinessProbe", "livenessProbe")})


def check_live(docs, server, cli):
    """Runs engram-server with the rendered flags; returns error strings."""
    config_map = next(d for d in docs if d.get("kind") == "ConfigMap")
    flags_text = next(iter(config_map["data"].values()))
    drain = absl_seconds(parse_flags(flags_text).get("drain_deadline", "20s"))
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        flagfile = os.path.join(tmp, "flags")
        ready = os.path.join(tmp, "ready.json")
        with open(flagfile, "w", encoding="utf-8") as f:
            f.write(flags_text)
        # Later flags win over the flagfile's: loopback and free ports here.
        # This machine has neither the shared volume nor the etcd cluster:
        # the data directory moves to a temporary folder, and an empty
        # --catalog runs the server on its own (embedded mode), where the
        # rendered one would wait for etcd and never turn SERVING.
        proc = subprocess.Popen(
            [server, f"--flagfile={flagfile}", "--grpc_address=127.0.0.1:0",
             "--metrics_address=127.0.0.1:0", f"--ready_file={ready}",
             f"--data_dir={os.path.join(tmp, 'data')}", "--catalog="],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(ready):
                if proc.poll() is not None:
                    return [f"engram-server --flagfile exited with "
                            f"{proc.returncode}: {proc.stderr.read().strip()}"]
                if time.monotonic() > deadline:
                    return ["engram-server did not become ready in 30 s"]
                time.sleep(0.05)
            with open(ready, encoding="utf-8") as f:
                ports = json.load(f)
            target = f"--server=127.0.0.1:{ports['grpc_port']}"
            for service in probe_services(docs):
                r = subprocess.run(
                    [cli, "health", target, f"--service={service}",
                     "--timeout=5s"],
                    capture_output=True, text=True, check=False)
                if r.returncode != 0:
                    output = (r.stdout + r.stderr).strip()
                    errors.append(f"health service {service!r} of a probe: "
                                  f"exit {r.returncode}: {output}")
            r = subprocess.run([cli, "health", target, "--service=no.such.Svc",
                                "--timeout=5s"], capture_output=True, text=True,
                               check=False)
            if r.returncode == 0:
                errors.append("engram-cli health passed for an unknown "
                              "service: the probe check would prove nothing")
            url = f"http://127.0.0.1:{ports['metrics_port']}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                metrics = response.read().decode()
            if not re.search(rf"^{HPA_METRIC}(\{{[^}}]*\}})? ", metrics,
                             re.MULTILINE):
                errors.append(f"/metrics has no {HPA_METRIC}, the HPA's metric")
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=drain + 5)
                if code != 0:
                    errors.append(f"SIGTERM: engram-server exited {code}")
            except subprocess.TimeoutExpired:
                errors.append(f"SIGTERM: no exit within --drain_deadline "
                              f"{drain:g}s + 5s")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return errors


def mutations():
    """(what breaks, function that breaks a deep copy of the documents)."""

    def container(docs):
        d = next(d for d in docs if d["kind"] == "Deployment")
        return d["spec"]["template"]["spec"]["containers"][0]

    def pod(docs):
        d = next(d for d in docs if d["kind"] == "Deployment")
        return d["spec"]["template"]["spec"]

    flags = mutations_flags

    def kind(docs, k):
        return next(x for x in docs if x["kind"] == k)

    def named(docs, k, name):
        return next(x for x in docs if x["kind"] == k
                    and x["metadata"]["name"] == name)

    def headless(docs):
        return named(docs, "Service", "engram-headless")

    def etcd_pods(docs, labels):
        sts = kind(docs, "StatefulSet")["spec"]
        sts["selector"]["matchLabels"] = dict(labels)
        sts["template"]["metadata"]["labels"] = dict(labels)

    catalog = ("engram-etcd-1.engram-etcd:2379,"
               "engram-etcd-2.engram-etcd:2379/")

    return [
        ("readiness probe on another port",
         lambda d: container(d)["readinessProbe"]["grpc"].update(port=50052)),
        ("readiness probe on a misspelt service",
         lambda d: container(d)["readinessProbe"]["grpc"].update(
             service="engram.similarity.v1.Similarty")),
        ("liveness as an HTTP probe",
         lambda d: container(d).update(
             livenessProbe={"httpGet": {"path": "/", "port": 9464}})),
        ("grace period too short",
         lambda d: pod(d).update(terminationGracePeriodSeconds=25)),
        ("drain deadline longer than the grace period",
         lambda d: flags(d, "--drain_deadline=20s", "--drain_deadline=30s")),
        ("flags on another gRPC port",
         lambda d: flags(d, "--grpc_address=0.0.0.0:50051",
                         "--grpc_address=0.0.0.0:50052")),
        ("worker_threads unrelated to the CPU request",
         lambda d: flags(d, "--worker_threads=4", "--worker_threads=0")),
        ("root allowed",
         lambda d: pod(d)["securityContext"].update(runAsNonRoot=False)),
        ("capability added",
         lambda d: container(d)["securityContext"]["capabilities"].update(
             add=["NET_ADMIN"])),
        ("writable root filesystem",
         lambda d: container(d)["securityContext"].update(
             readOnlyRootFilesystem=False)),
        ("no memory limit",
         lambda d: container(d)["resources"]["limits"].pop("memory")),
        ("resident budget as large as the memory limit",
         lambda d: flags(d, "--resident_memory_bytes=5368709120",
                         "--resident_memory_bytes=8589934592")),
        ("unknown field (strict schema)",
         lambda d: container(d).update(readinesProbe={})),
        ("wrong type (schema)",
         lambda d: container(d)["ports"][0].update(containerPort="50051")),
        ("retired API version",
         lambda d: kind(d, "HorizontalPodAutoscaler").update(
             apiVersion="autoscaling/v2beta2")),
        ("metrics port on the headless Service too",
         lambda d: headless(d)["spec"]["ports"].append(
             {"name": "metrics", "port": 9464, "targetPort": "metrics"})),
        ("ServiceMonitor with a misspelt field (CRD check)",
         lambda d: kind(d, "ServiceMonitor")["spec"]["endpoints"][0].update(
             intervall="15s")),
        ("HPA on another metric",
         lambda d: kind(d, "HorizontalPodAutoscaler")["spec"]["metrics"][0][
             "pods"]["metric"].update(name="cpu_usage")),
        ("replicas fixed beside the HPA",
         lambda d: kind(d, "Deployment")["spec"].update(replicas=3)),
        ("PDB selecting nothing",
         lambda d: named(d, "PodDisruptionBudget", "engram")["spec"][
             "selector"].update(matchLabels={"app": "other"})),
        ("GPU pod without the GPU pool's toleration",
         lambda d: pod(d).pop("tolerations")),
        ("data volume ReadWriteOnce",
         lambda d: kind(d, "PersistentVolumeClaim")["spec"].update(
             accessModes=["ReadWriteOnce"])),
        ("--data_dir on a path no volume mounts",
         lambda d: flags(d, "--data_dir=/var/lib/engram",
                         "--data_dir=/srv/engram")),
        ("--data_dir on the /tmp emptyDir",
         lambda d: flags(d, "--data_dir=/var/lib/engram",
                         "--data_dir=/tmp/engram")),
        ("a catalog endpoint dropped",
         lambda d: flags(d, catalog, "engram-etcd-1.engram-etcd:2379/")),
        ("a catalog endpoint on the peer port",
         lambda d: flags(d, catalog, catalog.replace(":2379/", ":2380/"))),
        ("etcd StatefulSet of 2 members",
         lambda d: kind(d, "StatefulSet")["spec"].update(replicas=2)),
        ("etcd PDB letting two members go",
         lambda d: named(d, "PodDisruptionBudget", "engram-etcd")[
             "spec"].update(maxUnavailable=2)),
        ("etcd Service with a cluster IP",
         lambda d: named(d, "Service", "engram-etcd")["spec"].pop(
             "clusterIP")),
        ("etcd members started one by one",
         lambda d: kind(d, "StatefulSet")["spec"].update(
             podManagementPolicy="OrderedReady")),
        ("etcd pods labelled as engram pods",
         lambda d: etcd_pods(d, {"app.kubernetes.io/name": "engram"})),
    ]


def self_test(docs, ctx, server=None, cli=None):
    """Fails unless every mutation of a passing rendering is caught."""
    failures = []
    baseline = check_overlay("gpu", docs, ctx)
    if baseline:
        return ["self-test needs a passing gpu rendering: " + baseline[0]]
    for what, mutate in mutations():
        broken = copy.deepcopy(docs)
        mutate(broken)
        errors = check_overlay("gpu", broken, ctx)
        print(f"  {'caught' if errors else 'MISSED'}: {what}"
              + (f" ({errors[0]})" if errors else ""))
        if not errors:
            failures.append(f"self-test: not caught: {what}")
    broken = ctx.dockerfile.replace("USER 10001:10001", "USER root")
    if not check_dockerfile(broken, 50051, 9464, 10001):
        failures.append("self-test: not caught: Dockerfile running as root")
    config = copy.deepcopy(ctx.service_config)
    config["healthCheckConfig"]["serviceName"] = "engram.Similarity"
    if not check_service_config(config, ctx.service_name):
        failures.append("self-test: not caught: service config health-checks "
                        "a service the server does not have")
    config = copy.deepcopy(ctx.service_config)
    config["methodConfig"][0]["name"].append(
        {"service": ctx.service_name, "method": "UploadCollection"})
    if not check_service_config(config, ctx.service_name):
        failures.append("self-test: not caught: service config retries an "
                        "upload")
    if server and cli:
        live = [
            ("a flag engram-server does not have",
             lambda d: mutations_flags(d, "--log_level=info",
                                       "--log_level=info\n--no_such_flag=1")),
            ("a probe on a health service the server does not know",
             lambda d: next(x for x in d if x["kind"] == "Deployment")[
                 "spec"]["template"]["spec"]["containers"][0][
                     "readinessProbe"]["grpc"].update(service="no.such.Svc")),
        ]
        for what, mutate in live:
            broken = copy.deepcopy(docs)
            mutate(broken)
            errors = check_live(broken, server, cli)
            detail = f" ({errors[0].strip()[:100]})" if errors else ""
            print(f"  {'caught' if errors else 'MISSED'} by the live check: "
                  f"{what}{detail}")
            if not errors:
                failures.append(f"self-test: live check missed: {what}")
    return failures


def mutations_flags(docs, old, new):
    """Replaces `old` by `new` in the rendered flagfile."""
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    key = next(iter(cm["data"]))
    assert old in cm["data"][key], old
    cm["data"][key] = cm["data"][key].replace(old, new)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--k8s-version", action="append", required=True)
    parser.add_argument("--server", help="engram-server, for the live check")
    parser.add_argument("--cli", help="engram-cli, for the live check")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("rendered", nargs="+", metavar="OVERLAY=FILE")
    args = parser.parse_args()
    ctx = Context(args.repo, args.k8s_version)

    errors = check_service_config(ctx.service_config, ctx.service_name)
    print(f"deploy/grpc-service-config.json: "
          f"{'FAILED' if errors else 'ok'}")
    for e in errors:
        print(f"  error: {e}")
    failed = bool(errors)
    for item in args.rendered:
        overlay, path = item.split("=", 1)
        docs = [d for d in yaml.safe_load_all(read(path)) if d]
        errors = check_overlay(overlay, docs, ctx)
        print(f"{overlay}: {len(docs)} objects, schemas for Kubernetes "
              f"{', '.join(ctx.k8s_versions)} (strict), consistency: "
              f"{'FAILED' if errors else 'ok'}")
        if args.server and args.cli and not errors:
            errors = check_live(docs, args.server, args.cli)
            print(f"{overlay}: engram-server with the rendered flagfile, "
                  f"probe services {probe_services(docs)}: "
                  f"{'FAILED' if errors else 'ok'}")
        if args.self_test and overlay == "gpu" and not errors:
            errors = self_test(docs, ctx, args.server, args.cli)
            print(f"{overlay}: self-test: {'FAILED' if errors else 'ok'}")
        for e in errors:
            print(f"  error: {e}")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
