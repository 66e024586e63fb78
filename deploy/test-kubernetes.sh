#!/usr/bin/env bash
# deploy/kubernetes/: the kustomize base rendered (kubectl kustomize) and every object
# validated, strictly, against the Kubernetes API schemas (kubernetes-validate, from PyPI), the
# Secret examples too; then what the platform relies on, checked in the rendered objects. Both
# tools are installed where missing (kubectl from the distribution, kubernetes-validate pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
kubernetes_version=1.33.0
validator_version=1.37.0

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v kubectl >/dev/null 2>&1; then
  echo "test-kubernetes: installing kubectl (kubernetes-client) with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client
fi
if ! command -v kubernetes-validate >/dev/null 2>&1 \
  || [ "$(kubernetes-validate --version 2>/dev/null | awk '{print $NF}')" != "$validator_version" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$validator_version"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kubectl kustomize deploy/kubernetes/base >"$work/rendered.yaml" 2>"$work/kustomize.log" \
  || { cat "$work/kustomize.log"; exit 1; }
kubernetes-validate --strict --quiet -k "$kubernetes_version" "$work/rendered.yaml" deploy/kubernetes/examples/*.yaml
echo "kubernetes: every object valid against the API schemas of $kubernetes_version"

python3 - "$work/rendered.yaml" <<'PY'
import sys, yaml
objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(open(sys.argv[1])) if o}
failed = []
def check(what, ok):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failed.append(what)
def env(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}
def pod(kind, name):
    spec = objects[(kind, name)]["spec"]
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]
collector = pod("Deployment", "collector")["containers"][0]
scheduler = pod("StatefulSet", "scheduler")["containers"][0]
cronjob = pod("CronJob", "hello")["containers"][0]
check("two collectors, ready on /health/ready, alive on /health",
      objects[("Deployment", "collector")]["spec"]["replicas"] == 2
      and collector["readinessProbe"]["httpGet"]["path"] == "/health/ready"
      and collector["livenessProbe"]["httpGet"]["path"] == "/health")
check("a PodDisruptionBudget and an HPA for the collector",
      ("PodDisruptionBudget", "collector") in objects and ("HorizontalPodAutoscaler", "collector") in objects)
check("two schedulers in high availability, each with a spool volume",
      objects[("StatefulSet", "scheduler")]["spec"]["replicas"] == 2
      and env(scheduler).get("SCHEDULER_HA") == "true"
      and objects[("StatefulSet", "scheduler")]["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "spool")
check("the CronJob runs its job's latest slot", cronjob["args"] == ["run", "hello", "--slot", "latest"])
database = [name for (kind, name), o in objects.items() if kind in ("Deployment", "StatefulSet", "CronJob")
            for c in pod(kind, name)["containers"]
            if "DATABASE_URL" in env(c) or any(s.get("secretRef", {}).get("name") == "collector" for s in c.get("envFrom", []))]
check("only the collector has the database's credentials", database == ["collector"])
egress = objects[("NetworkPolicy", "no-database-but-the-collector")]["spec"]
allowed = objects[("NetworkPolicy", "collector-egress")]["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"]
check("every pod but the collector is kept from PostgreSQL's address",
      allowed in egress["egress"][0]["to"][0]["ipBlock"]["except"]
      and egress["podSelector"]["matchExpressions"][0]["values"] == ["collector"])
if failed:
    sys.exit(1)
PY
