"""deploy/kubernetes/: every overlay renders (`kubectl kustomize`, offline) into objects that
are valid against the Kubernetes JSON schemas (the `kubernetes-validate` package, offline), and
holds what matters to run it: probes, requests and limits, no secret in a ConfigMap or an env
literal, settings that exist, Services that reach their containers, and an Ingress that sends
each command of docs/api.md to the service that serves it."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from pydantic import SecretStr

from shared.metrics import Metrics
from shared.settings import Settings
from tests.deploy.manifests import KUBERNETES, KUBERNETES_VERSION, ROOT, of_kind, settings_env

SERVICES = ("intake", "investigation", "escalation", "callback")
WORKERS = ("projector", "dispatcher", "webhooks", "deadline-watch")


#: The shared Redis the services count their rate limits in (redis.yaml): not the image's.
REDIS = "complaints-redis"


def ours(obj: dict[str, Any]) -> bool:
    """A workload of the complaints image: the Jobs, and the web and worker Deployments."""
    component = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
    return obj["kind"] == "Job" or (obj["kind"] == "Deployment" and component in {"web", "worker"})


def pod_specs(objects: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if ours(o)
    ]


# -- the schemas -------------------------------------------------------------------------
#: The Prometheus Operator's kinds are CRDs, which kubernetes-validate does not know: their
#: shape is checked against these small schemas of the fields used (not the CRDs' full ones).
_RULE = {
    "type": "object",
    "required": ["alert", "expr", "labels", "annotations"],
    "properties": {
        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d|w|y)$"},
        "labels": {
            "type": "object",
            "required": ["severity"],
            "additionalProperties": {"type": "string"},
        },
        "annotations": {
            "type": "object",
            "required": ["summary", "description"],
            "additionalProperties": {"type": "string"},
        },
    },
    "additionalProperties": False,
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object"},
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string"},
                                "scrapeTimeout": {"type": "string"},
                                "honorLabels": {"type": "boolean"},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            }
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["groups"],
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "name": {"type": "string"},
                                "rules": {"type": "array", "minItems": 1, "items": _RULE},
                            },
                            "additionalProperties": False,
                        },
                    }
                },
                "additionalProperties": False,
            }
        },
    },
}


def test_the_validator_refuses_what_the_api_server_would() -> None:
    """(So that the test below is not passing for want of a schema.)"""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replica": 2, "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_every_object_is_valid_against_its_schema(objects: tuple[dict[str, Any], ...]) -> None:
    assert objects
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"] == "monitoring.coreos.com/v1":
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message} at {list(exc.path)}")


def test_every_workload_is_there(objects: tuple[dict[str, Any], ...]) -> None:
    deployments = {d["metadata"]["name"] for d in of_kind(objects, "Deployment") if ours(d)}
    assert deployments == {f"complaints-{n}" for n in SERVICES + WORKERS}
    assert {d["metadata"]["name"] for d in of_kind(objects, "Deployment")} == deployments | {REDIS}
    assert {j["metadata"]["name"] for j in of_kind(objects, "Job")} == {"complaints-setup"}
    scaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    assert scaled == {f"complaints-{n}" for n in SERVICES}
    budgets = of_kind(objects, "PodDisruptionBudget")
    covered = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for b in budgets}
    assert covered == deployments


# -- the containers ----------------------------------------------------------------------
def test_every_container_has_requests_limits_and_both_probes(
    objects: tuple[dict[str, Any], ...],
) -> None:
    for where, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert set(resources.get(bound, {})) >= {"cpu", "memory"}, (where, bound)
        if where.startswith("Job/"):
            continue  # a Job's container runs to its end: no probes
        for container in spec["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/health", where
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready", where
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_each_workload_runs_its_own_role_only(objects: tuple[dict[str, Any], ...]) -> None:
    """A background role on in its own workload and off in the web processes; the services
    started by the real command, on the ports of docs/api.md."""
    switches = {
        "projector": "COMPLAINTS_PROJECTOR_ENABLED",
        "dispatcher": "COMPLAINTS_DISPATCHER_ENABLED",
        "webhooks": "COMPLAINTS_WEBHOOKS_ENABLED",
        "deadline-watch": "COMPLAINTS_DEADLINE_WATCH_ENABLED",
    }
    serves = {"intake": "intake", "investigation": "investigation", "escalation": "escalation"}
    serves |= {"callback": "callback", "projector": "intake", "dispatcher": "investigation"}
    serves |= {"webhooks": "intake", "deadline-watch": "escalation"}
    ports = dict(zip(SERVICES, (8001, 8002, 8003, 8004), strict=True))
    # the service that runs each role when its switch is on (services/*/main.py)
    role_in = {"projector": SERVICES, "dispatcher": ("investigation",)}
    role_in |= {"webhooks": ("intake",), "deadline-watch": ("escalation",)}
    for deployment in filter(ours, of_kind(objects, "Deployment")):
        name = deployment["metadata"]["name"].removeprefix("complaints-")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        service = serves[name]
        assert container["command"][:4] == ["python", "-m", "shared.cli.serve", service]
        assert container["command"][-1] == str(ports[service])
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        for role, switch in switches.items():
            if service not in role_in[role]:
                continue  # the switch does nothing in this service
            assert env.get(switch) == ("true" if role == name else "false"), (name, switch)


def settings_env_names() -> set[str]:
    return {f"COMPLAINTS_{name.upper()}" for name in Settings.model_fields}


def secret_env_names() -> set[str]:
    secret = {n for n, f in Settings.model_fields.items() if f.annotation is SecretStr}
    return {f"COMPLAINTS_{n.upper()}" for n in secret | {"database_url"}}


def test_every_setting_set_exists_and_none_is_a_secret(objects: tuple[dict[str, Any], ...]) -> None:
    """Settings come from the ConfigMap and env literals (each a real setting); the secret
    ones (and the database URL, which holds a password) only from the Secret's files."""
    known, secret = settings_env_names(), secret_env_names()
    assert {"COMPLAINTS_JWT_SECRET", "COMPLAINTS_INDEX_KEY"} <= secret
    names = set(settings_env(objects))
    for _, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for item in container.get("env", []):
                assert "value" in item, item  # no valueFrom: secrets are files
                names.add(item["name"])
    assert names <= known, names - known
    assert not names & secret, names & secret
    for config_map in of_kind(objects, "ConfigMap"):
        for value in config_map["data"].values():
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), "a password in a URL"
    assert not of_kind(objects, "Secret"), "Secrets are made in the cluster, not committed"


def test_the_settings_of_the_config_map_are_accepted(
    objects: tuple[dict[str, Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every value parses as its setting (a JSON object, a list of networks, a URL)."""
    env = settings_env(objects)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.environment == "production"
    assert str(settings.policy_path) == env["COMPLAINTS_POLICY_PATH"]
    assert settings.console_service_urls["escalation"] == "http://complaints-escalation:8003"


def test_secrets_are_files_in_the_settings_secrets_directory(
    objects: tuple[dict[str, Any], ...],
) -> None:
    from shared.settings import SECRETS_DIR

    env = settings_env(objects)
    for where, spec in pod_specs(objects):
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        for container in spec.get("initContainers", []) + spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert secrets[mounts[str(SECRETS_DIR)]] == "complaints-settings", where
            audit = Path(env["COMPLAINTS_AUDIT_KEY_PATH"]).parent
            kek = Path(env["COMPLAINTS_KEK_PATH"]).parent
            assert secrets[mounts[str(audit)]] == "complaints-audit-key", where
            assert secrets[mounts[str(kek)]] == "complaints-kek", where
            assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] in secrets)


def test_the_policy_config_map_is_the_packaged_policy() -> None:
    copies = KUBERNETES / "base" / "policy"
    packaged = ROOT / "shared" / "policy"
    assert sorted(p.name for p in copies.glob("*.toml")) == sorted(
        p.name for p in packaged.glob("*.toml")
    )
    for copy in copies.glob("*.toml"):
        assert copy.read_text() == (packaged / copy.name).read_text(), (
            f"cp shared/policy/{copy.name} deploy/kubernetes/base/policy/"
        )


def test_every_service_port_is_a_container_port(objects: tuple[dict[str, Any], ...]) -> None:
    deployments = of_kind(objects, "Deployment")
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        pods = [
            d
            for d in deployments
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, service["metadata"]["name"]
        ports = [p for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]]
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            found = [p for p in ports if target in (p.get("name"), p["containerPort"])]
            assert found, (service["metadata"]["name"], target)
            assert port["port"] == found[0]["containerPort"]


# -- the Ingress -------------------------------------------------------------------------
def commands_of_the_contract() -> list[tuple[str, str]]:
    """(service, path) of every command in docs/api.md: the Commands table and the webhook
    subscriptions."""
    text = (ROOT / "docs/api.md").read_text()
    commands = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"^\| (\w+) \| `(/[^`]+)` \|", commands, flags=re.MULTILINE)
    found += [("intake", "/subscriptions"), ("intake", "/subscriptions/{id}")]
    assert len(found) > 15
    return found


def route(ingress: dict[str, Any], path: str) -> str | None:
    """The Service ingress-nginx sends `path` to: with use-regex, each path is a
    case-insensitive regular expression matched at the start, the longest tried first."""
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    paths = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    for candidate in sorted(paths, key=lambda p: len(p["path"]), reverse=True):
        assert candidate["pathType"] == "ImplementationSpecific"
        if re.match(candidate["path"], path, flags=re.IGNORECASE):
            return str(candidate["backend"]["service"]["name"])
    return None


def test_the_ingress_sends_each_command_to_its_service(objects: tuple[dict[str, Any], ...]) -> None:
    (ingress,) = of_kind(objects, "Ingress")
    for service, template in commands_of_the_contract():
        path = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), template)
        assert route(ingress, path) == f"complaints-{service}", (service, template)
    some = str(uuid.uuid4())
    for read in (
        f"/complaints/{some}",
        f"/complaints/{some}/history",
        "/complaints",
        "/audit/export",
        "/console/",
        "/docs",
        "/openapi.json",
        "/reports/improvement",
        f"/incidents/{some}",
    ):
        assert route(ingress, read) is not None, read
    for internal in ("/metrics", "/health", "/ready", "/", "/complaints-x/1/reply/x"):
        assert route(ingress, internal) in (None, "complaints-intake"), internal
    for internal in ("/metrics", "/health", "/ready"):
        assert route(ingress, internal) is None, f"{internal} must not be routed from outside"


# -- monitoring --------------------------------------------------------------------------
def exported_metric_names() -> set[str]:
    """The sample names the services export: every family of a process's metrics, and the
    gauges read at scrape time (each named in a GaugeMetricFamily of the code)."""
    registry = Metrics().registry
    scraped = {
        name
        for folder in ("shared", "services")
        for path in (ROOT / folder).rglob("*.py")
        for name in re.findall(r'GaugeMetricFamily\(\s*"(complaints_[a-z_]+)"', path.read_text())
    }
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
    }
    return scraped | {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_alert_rules_use_only_metrics_that_exist(objects: tuple[dict[str, Any], ...]) -> None:
    exported = exported_metric_names()
    assert "complaints_http_requests_total" in exported
    (rules,) = of_kind(objects, "PrometheusRule")
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            used = set(re.findall(r"\bcomplaints_[a-z_]+\b", rule["expr"]))
            assert used <= exported, (rule["alert"], used - exported)
    (monitor,) = of_kind(objects, "ServiceMonitor")
    selector = monitor["spec"]["selector"]
    scraped = [s for s in of_kind(objects, "Service") if selects(selector, s["metadata"]["labels"])]
    assert len(scraped) == len(SERVICES + WORKERS)
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    # scraped on the port that serves /metrics (the API's answers it 404)
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    for service in scraped:
        named = {p["name"]: p for p in service["spec"]["ports"]}
        assert named["metrics"]["targetPort"] == "metrics", service["metadata"]["name"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, and matchExpressions with In) takes `labels`."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_rate_limits_redis_is_reached_by_the_services_alone(
    objects: tuple[dict[str, Any], ...],
) -> None:
    """The ConfigMap points the services at the Redis of redis.yaml; only they reach it; it
    runs unprivileged, bounded, probed, and keeps nothing on disk."""
    env = settings_env(objects)
    assert env["COMPLAINTS_RATE_LIMIT_STORAGE_URL"] == f"redis://{REDIS}:6379/0"
    (service,) = [s for s in of_kind(objects, "Service") if s["metadata"]["name"] == REDIS]
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    (redis,) = [d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == REDIS]
    pod = redis["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, bound
    assert container["livenessProbe"] and container["readinessProbe"]
    assert container["command"][:5] == ["redis-server", "--save", "", "--appendonly", "no"]
    policies = [
        p["spec"]
        for p in of_kind(objects, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], redis["spec"]["template"]["metadata"]["labels"])
    ]
    allowed = [rule for policy in policies for rule in policy.get("ingress", [])]
    assert len(allowed) == 1
    (source,) = allowed[0]["from"]
    assert source == {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "web"}}}
    assert allowed[0]["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_network_policies_deny_by_default(objects: tuple[dict[str, Any], ...]) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    assert policies["complaints-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    monitoring = policies["complaints-metrics-from-monitoring"]["ingress"][0]["from"][0]
    assert monitoring["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


# -- the metrics port --------------------------------------------------------------------
def test_every_complaints_container_serves_the_metrics_on_the_port_the_settings_name(
    objects: tuple[dict[str, Any], ...],
) -> None:
    """COMPLAINTS_METRICS_PORT (the ConfigMap's, overridden nowhere) is each web and worker
    container's port `metrics`, apart from its API's port `http`, which the probes use."""
    env = settings_env(objects)
    port = int(env["COMPLAINTS_METRICS_PORT"])
    deployments = [d for d in of_kind(objects, "Deployment") if ours(d)]
    assert len(deployments) == len(SERVICES + WORKERS)
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == port, name
        assert ports["http"] != port and int(container["command"][-1]) == ports["http"], name
        sources = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert len(sources) == 1 and sources[0].startswith("complaints-env"), name
        assert "COMPLAINTS_METRICS_PORT" not in {e["name"] for e in container.get("env", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == "http", (name, probe)


def admitted(objects: tuple[dict[str, Any], ...], pod_labels: dict[str, str]) -> set[str]:
    """Who the NetworkPolicies let open a connection to a pod with these labels, and on which
    port: "<source> -> <port>", the source a namespace (`ns:monitoring`) or the pods of this
    namespace a selector takes (`pods:component=web`), or both (`ns:…/pods:…`)."""

    def source(peer: dict[str, Any]) -> str:
        parts = []
        if "namespaceSelector" in peer:
            (namespace,) = peer["namespaceSelector"]["matchLabels"].values()
            parts.append(f"ns:{namespace}")
        if "podSelector" in peer:
            labels = peer["podSelector"]["matchLabels"]
            pods = ",".join(f"{k.rsplit('/', 1)[-1]}={v}" for k, v in sorted(labels.items()))
            parts.append(f"pods:{pods}")
        return "/".join(parts)

    found = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], pod_labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            assert rule.get("from") and rule.get("ports"), policy["metadata"]["name"]
            found |= {
                f"{source(peer)} -> {p['port']}" for peer in rule["from"] for p in rule["ports"]
            }
    return found


def test_the_monitoring_namespace_reaches_the_metrics_port_alone(
    objects: tuple[dict[str, Any], ...],
) -> None:
    """A NetworkPolicy admits by port, not by path: the metrics have a port of their own, the
    only one the monitoring namespace reaches; the API's port is reached by the ingress
    controller and the services (the console's calls), and a worker's by nobody."""
    expected = {
        "web": {
            "ns:ingress-nginx/pods:name=ingress-nginx -> http",
            "pods:component=web -> http",
            "ns:monitoring -> metrics",
        },
        "worker": {"ns:monitoring -> metrics"},
    }
    for deployment in filter(ours, of_kind(objects, "Deployment")):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        component = labels["app.kubernetes.io/component"]
        assert admitted(objects, labels) == expected[component], deployment["metadata"]["name"]
