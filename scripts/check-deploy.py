#!/usr/bin/env python3
"""Offline checks of deploy/ and docker-compose.yml that need no Prometheus, Grafana or cluster.

Called by scripts/check-deploy with the checkout as the working directory and a scratch folder
as its argument, where it writes dashboard-rules.yml: every dashboard expression as a recording
rule, so that promtool can check their PromQL syntax.

- every metric name in the dashboard's and the alert rules' expressions is one the Swift sources
  export (Counter/Gauge/Timer(label: ...); a Timer is a histogram: _bucket, _sum, _count), or `up`;
- every `outcome` / `state` label value they match appears as a literal in the sources;
- the dashboard is JSON, takes its data source from the `datasource` variable, has unique ids;
- the Kubernetes manifests agree with each other and with the program (commands, flags, probes,
  grace period); kustomization.yaml lists every manifest;
- docker-compose.yml: the monitoring services sit behind the `monitoring` profile, use pinned
  images, and mount files that exist.
"""
import glob
import json
import os
import re
import sys

import yaml

errors = []


def fail(message):
    errors.append(message)


_reported = [0]


def ok(message):
    """Prints message when the section that ends here added no error."""
    if len(errors) == _reported[0]:
        print(f"ok: {message}")
    _reported[0] = len(errors)


# ---- What the program exports -------------------------------------------------------------

sources = {}
for path in sorted(glob.glob("Sources/**/*.swift", recursive=True)):
    with open(path, encoding="utf-8") as f:
        sources[path] = f.read()
all_source = "\n".join(sources.values())

exported = set()
METRIC_CALL = r'\b(Counter|FloatingPointCounter|Gauge|Meter|Recorder|Timer)\(\s*label:\s*"([^"]+)"'
for kind, name in re.findall(METRIC_CALL, all_source):
    if kind in ("Timer", "Recorder"):
        exported.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    if kind != "Timer":
        exported.add(name)
# JobQueue's MetricNames and WebhookDelivery's DeliveryMetricNames name their metrics after a prefix
# (`jobs = prefix + "_jobs_total"`, ...), the metricPrefix the program gives its JobQueueSchema;
# what each is (a Timer is a histogram) is read where it is used: `Timer(label: metrics.jobDuration`.
prefixes = set(re.findall(r'metricPrefix:\s*"([A-Za-z_][A-Za-z0-9_]*)"', all_source))
suffixes = dict(re.findall(r'\b(\w+)\s*=\s*prefix\s*\+\s*"(_[A-Za-z0-9_]+)"', all_source))
if not prefixes or not suffixes:
    fail("found no JobQueueSchema metricPrefix or no MetricNames suffix in Sources")
kinds = {}
for kind, prop in re.findall(
        r'\b(Counter|FloatingPointCounter|Gauge|Meter|Recorder|Timer)\(\s*label:\s*(?:\w+\.)+(\w+)\s*[,)]', all_source):
    kinds.setdefault(prop, set()).add(kind)
for prop in suffixes:
    if prop not in kinds:
        fail(f"metric name {prop} ({suffixes[prop]}) is declared but never recorded in Sources")
for prefix in prefixes:
    for prop, suffix in suffixes.items():
        name = prefix + suffix
        if kinds.get(prop, set()) & {"Timer", "Recorder"}:  # a histogram's series
            exported.update(name + series for series in ("_bucket", "_sum", "_count"))
        if kinds.get(prop, set()) - {"Timer"}:
            exported.add(name)
if not exported:
    fail("found no metric in Sources (Counter/Gauge/Timer(label: ...))")
BUILTIN = {"up"}  # set by Prometheus for every target

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2"}


def metric_names(expr):
    """Metric names selected by a PromQL expression (a small tokenizer, enough for ours)."""
    names = set()
    for metric, _ in re.findall(r'label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s*,', expr):
        names.add(metric)
    expr = re.sub(r'label_values\([^)]*\)', " ", expr)
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    for m in re.finditer(r"(?<![0-9.A-Za-z_:$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        token = m.group(0)
        rest = s[m.end():].lstrip()
        if token in KEYWORDS or rest.startswith("("):
            continue
        names.add(token)
    return names


def check_expr(where, expr):
    for name in sorted(metric_names(expr)):
        if name not in exported and name not in BUILTIN:
            fail(f"{where}: metric {name} is not exported by Sources")
    for label, values in re.findall(r'\b(outcome|state)\s*=~?\s*"([^"]*)"', expr):
        for value in values.split("|"):
            if not re.search(r"[\"']" + re.escape(value) + r"[\"']", all_source):
                fail(f'{where}: {label}="{value}" appears nowhere in Sources')


# ---- Alert rules ----------------------------------------------------------------------------

with open("deploy/prometheus/alerts.yml", encoding="utf-8") as f:
    rules = yaml.safe_load(f)
alert_count = 0
for group in rules["groups"]:
    for rule in group["rules"]:
        name = rule.get("alert") or rule.get("record")
        check_expr(f"alerts.yml {name}", rule["expr"])
        if "alert" in rule:
            alert_count += 1
            if "for" not in rule:
                fail(f"alerts.yml {name}: no `for:`")
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                fail(f"alerts.yml {name}: severity label missing or unknown")
            if not {"summary", "description"} <= set(rule.get("annotations", {})):
                fail(f"alerts.yml {name}: summary and description annotations required")
ok(f"alerts.yml: {alert_count} alerts, metric names and outcome values all from Sources")

# ---- Grafana dashboard ----------------------------------------------------------------------

with open("deploy/grafana/webhook-worker.json", encoding="utf-8") as f:
    dashboard = json.load(f)
variables = {v["name"]: v for v in dashboard["templating"]["list"]}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    fail("dashboard: no `datasource` variable of type datasource (prometheus)")
panels = []
for panel in dashboard["panels"]:
    panels.append(panel)
    panels.extend(panel.get("panels", []))
ids = [p["id"] for p in panels]
if len(ids) != len(set(ids)):
    fail("dashboard: panel ids are not unique")
want_ds = {"type": "prometheus", "uid": "${datasource}"}
exprs = []
for panel in panels:
    if panel["type"] == "row":
        continue
    if panel.get("datasource") != want_ds:
        fail(f"dashboard panel {panel['title']!r}: datasource is not ${{datasource}}")
    if not panel.get("targets"):
        fail(f"dashboard panel {panel['title']!r}: no queries")
    for target in panel.get("targets", []):
        if target.get("datasource") != want_ds:
            fail(f"dashboard panel {panel['title']!r} {target['refId']}: datasource is not ${{datasource}}")
        check_expr(f"dashboard panel {panel['title']!r}", target["expr"])
        exprs.append((panel["id"], target["refId"], target["expr"]))
for name, variable in variables.items():
    if variable.get("type") == "query":
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        check_expr(f"dashboard variable {name}", query)
        if variable.get("datasource") != want_ds:
            fail(f"dashboard variable {name}: datasource is not ${{datasource}}")
if any("circuit" in json.dumps(p).lower() for p in panels) and "circuit" not in " ".join(exported):
    fail("dashboard: a circuit-breaker panel, but Sources export no circuit-breaker metric")
ok(f"webhook-worker.json: JSON, {len(panels)} panels, {len(exprs)} queries, metric names all from Sources")

# Dashboard queries as recording rules, with Grafana's variables filled in, for promtool.
substitutions = {"__rate_interval": "5m", "__range": "1h", "__interval": "1m"}


def fill(expr):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: substitutions.get(m.group(1), ".*"), expr)


scratch = sys.argv[1]
with open(os.path.join(scratch, "dashboard-rules.yml"), "w", encoding="utf-8") as f:
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{pid}_{ref}", "expr": fill(expr)} for pid, ref, expr in exprs]}]}, f)

# ---- Kubernetes ------------------------------------------------------------------------------

K8S = "deploy/kubernetes"
with open(f"{K8S}/kustomization.yaml", encoding="utf-8") as f:
    kustomization = yaml.safe_load(f)
listed = set(kustomization.get("resources", []))
present = {os.path.basename(p) for p in glob.glob(f"{K8S}/*.yaml")} - {"kustomization.yaml"}
for missing in sorted(listed - present):
    fail(f"kustomization.yaml lists {missing}, which does not exist")
for extra in sorted(present - listed):
    fail(f"kustomization.yaml does not list {extra}")

objects = {}
for name in sorted(present):
    with open(f"{K8S}/{name}", encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if doc:
                objects[doc["kind"]] = doc

commands = set(re.findall(r'commandName:\s*"([^"]+)"', all_source))


def pod_spec(obj):
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"], spec["template"]["metadata"].get("labels", {})


def check_args(kind, args):
    if not args or args[0] not in commands:
        fail(f"{kind}: command {args[:1]} is not a webhook-worker command")
    for flag in (a for a in args if a.startswith("--")):
        option = flag[2:].split("=")[0]
        camel = re.sub(r"-(\w)", lambda m: m.group(1).upper(), option)
        declared = f'customLong("{option}")' in all_source or f'flag: "{option}"' in all_source
        if not declared and not re.search(rf"\bvar {camel}\b", all_source):
            fail(f"{kind}: flag {flag} is not an option in Sources")


for kind, command in (("Deployment", "run"), ("Job", "migrate"), ("CronJob", "prune")):
    obj = objects.get(kind)
    if not obj:
        fail(f"deploy/kubernetes has no {kind}")
        continue
    spec, labels = pod_spec(obj)
    container = spec["containers"][0]
    args = container.get("args", [])
    check_args(kind, args)
    if args[:1] != [command]:
        fail(f"{kind}: runs {args[:1]}, expected {command}")
    env = {e["name"]: e for e in container.get("env", [])}
    if "secretKeyRef" not in env.get("DATABASE_URL", {}).get("valueFrom", {}):
        fail(f"{kind}: DATABASE_URL does not come from a Secret")

deployment = objects.get("Deployment")
if deployment:
    spec, labels = pod_spec(deployment)
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    port = int(env.get("WORKER_HTTP_PORT") or 0)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if deployment["spec"]["replicas"] != 3:
        fail("Deployment: replicas is not 3")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        target = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or target != port:
            fail(f"Deployment: {probe} is not GET {path} on WORKER_HTTP_PORT {port}")
    for path in ("metrics", "healthz", "readyz"):
        if f'router.get("{path}")' not in all_source:
            fail(f"Sources serve no /{path}")
    shutdown = int(re.fullmatch(r"(\d+)s", env.get("WORKER_SHUTDOWN_TIMEOUT", "30s")).group(1))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    grace = spec.get("terminationGracePeriodSeconds", 30)
    # drain: the shutdown timeout, then up to 5 s for cancelled jobs to be released
    if not sleep or grace <= sleep + shutdown + 5:
        fail(f"Deployment: grace period {grace}s is not above preStop {sleep}s + shutdown {shutdown}s + 5s")
    resources = container.get("resources", {})
    if resources.get("requests") != {"cpu": "100m", "memory": "64Mi"} or resources.get("limits") != {"memory": "256Mi"}:
        fail("Deployment: resources are not requests 100m/64Mi, limit 256Mi")
    selector = deployment["spec"]["selector"]["matchLabels"]
    if any(labels.get(k) != v for k, v in selector.items()):
        fail("Deployment: selector does not match the pod labels")
    for kind in ("Service", "PodDisruptionBudget"):
        obj = objects.get(kind)
        if not obj:
            fail(f"deploy/kubernetes has no {kind}")
            continue
        sel = obj["spec"]["selector"]
        sel = sel.get("matchLabels", sel)
        if sel != selector:
            fail(f"{kind}: selector differs from the Deployment's")
    service = objects.get("Service")
    if service and not any(ports.get(p.get("targetPort"), p.get("targetPort")) == port
                           for p in service["spec"]["ports"]):
        fail("Service: does not expose the metrics port")
ok(f"kubernetes: {len(objects)} manifests consistent with each other and with Sources (commands, flags, probes)")

# ---- docker-compose.yml ---------------------------------------------------------------------

with open("docker-compose.yml", encoding="utf-8") as f:
    compose = yaml.safe_load(f)
services = compose["services"]
for name in ("prometheus", "grafana"):
    service = services.get(name)
    if not service:
        fail(f"docker-compose.yml: no {name} service")
        continue
    if service.get("profiles") != ["monitoring"]:
        fail(f"docker-compose.yml: {name} is not behind the monitoring profile")
    if not re.fullmatch(r"[a-z0-9./-]+:v?\d+\.\d+\.\d+", service.get("image", "")):
        fail(f"docker-compose.yml: {name} image {service.get('image')!r} is not pinned to a version")
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith(".") and not os.path.exists(source):
            fail(f"docker-compose.yml: {name} mounts {source}, which does not exist")
for name, service in services.items():
    if name not in ("prometheus", "grafana") and "profiles" in service:
        fail(f"docker-compose.yml: {name} should not need a profile")
for volume in (v for s in services.values() for v in s.get("volumes", [])):
    source = volume.split(":")[0]
    if not source.startswith(".") and source not in (compose.get("volumes") or {}):
        fail(f"docker-compose.yml: named volume {source} is not declared")
ok("docker-compose.yml: YAML, monitoring profile, pinned images, mounted files exist")

if errors:
    for message in errors:
        print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)
