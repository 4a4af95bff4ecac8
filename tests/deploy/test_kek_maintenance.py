"""deploy/kubernetes/base/kek-maintenance.yaml: the daily CronJob that walks the KEKs' life
(`kek maintain --kubernetes-secret`): it runs the command the CLI takes, keeps the copy of the
Secret's file in memory under the name the pods mount it by, reaches the database, and holds
the only API token of the namespace's pods, allowed to read and update that one Secret.
(tests/integration/test_kek_staging.py runs the command against an API server.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.cli.kek import SECRET_NAME, arguments
from tests.deploy.manifests import of_kind, settings_env

NAME = "complaints-kek-maintenance"


def _pod(objects: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CronJob, and the spec of its pods."""
    (job,) = [j for j in of_kind(objects, "CronJob") if j["metadata"]["name"] == NAME]
    return job, job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_it_runs_maintain_daily_one_at_a_time(objects: tuple[dict[str, Any], ...]) -> None:
    job, pod = _pod(objects)
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every = job["spec"]["schedule"].split()
    assert every == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    (container,) = pod["containers"]
    (intake,) = [
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "complaints-intake"
    ]
    assert container["image"] == intake["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["command"][:3] == ["python", "-m", "shared.cli.kek"]
    args = arguments().parse_args(container["command"][3:])
    assert (args.command, args.kubernetes_secret) == ("maintain", SECRET_NAME)


def test_its_copy_of_the_kek_file_is_in_memory_named_as_the_pods_mount_it(
    objects: tuple[dict[str, Any], ...],
) -> None:
    _, pod = _pod(objects)
    (container,) = pod["containers"]
    copy = Path(next(e["value"] for e in container["env"] if e["name"] == "COMPLAINTS_KEK_PATH"))
    # The key of the Secret is the file's name: the services mount it under the same one.
    assert copy.name == Path(settings_env(objects)["COMPLAINTS_KEK_PATH"]).name
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == copy.parent)
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    # It reads the KEKs through the API, not from a mounted copy that may lag behind.
    kek_secrets = [
        v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == SECRET_NAME
    ]
    assert kek_secrets == []


def test_it_alone_holds_a_token_allowed_only_that_secret(
    objects: tuple[dict[str, Any], ...],
) -> None:
    _, pod = _pod(objects)
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is True
    (account,) = [a for a in of_kind(objects, "ServiceAccount") if a["metadata"]["name"] == NAME]
    assert account["automountServiceAccountToken"] is False
    (role,) = [r for r in of_kind(objects, "Role") if r["metadata"]["name"] == NAME]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [SECRET_NAME],
            "verbs": ["get", "update"],
        }
    ]
    (binding,) = [b for b in of_kind(objects, "RoleBinding") if b["metadata"]["name"] == NAME]
    assert binding["roleRef"]["name"] == NAME
    assert [s["name"] for s in binding["subjects"]] == [NAME]
    # Every other pod of ours mounts no token.
    for kind in ("Deployment", "Job"):
        for workload in of_kind(objects, kind):
            spec = workload["spec"]["template"]["spec"]
            assert spec["automountServiceAccountToken"] is False, workload["metadata"]["name"]


def test_it_reaches_the_database(objects: tuple[dict[str, Any], ...]) -> None:
    job, _ = _pod(objects)
    (database,) = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["metadata"]["name"] == "complaints-postgresql-from-complaints"
    ]
    (expression,) = database["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    labels = job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] in expression["values"]
