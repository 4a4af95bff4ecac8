"""deploy/kubernetes/base/kek-maintenance.yaml: the daily CronJob that walks the KEKs' life
(`kek maintain`) on a copy of the KEK Secret and applies the copy back. Its init container's
script runs here as written (paths moved to a temporary directory) and makes the Secret that
the pods then mount; only the applying container holds an API token, allowed to touch that one
Secret."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate

from shared.cli.kek import SECRET_NAME
from shared.cli.setup_store import setup
from shared.store.keystore import KekFile
from tests.conftest import make_settings
from tests.deploy.manifests import KUBERNETES_VERSION, of_kind

NAME = "complaints-kek-maintenance"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _cron_job(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (job,) = [j for j in of_kind(objects, "CronJob") if j["metadata"]["name"] == NAME]
    return job


def _env(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    (env,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("complaints-env")
    ]
    return dict(env["data"])


def test_it_runs_daily_one_at_a_time_and_reaches_only_its_secret(
    objects: tuple[dict[str, Any], ...],
) -> None:
    job = _cron_job(objects)
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *every = job["spec"]["schedule"].split()
    assert every == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (maintain,), (apply,) = pod["initContainers"], pod["containers"]
    assert maintain["image"] == _image_of_the_services(objects)
    # Only the applying container holds an API token; the ServiceAccount mounts none itself.
    assert pod["automountServiceAccountToken"] is False
    (account,) = [a for a in of_kind(objects, "ServiceAccount") if a["metadata"]["name"] == NAME]
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == NAME
    assert TOKEN_DIR not in {m["mountPath"] for m in maintain["volumeMounts"]}
    assert TOKEN_DIR in {m["mountPath"] for m in apply["volumeMounts"]}
    (role,) = [r for r in of_kind(objects, "Role") if r["metadata"]["name"] == NAME]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [SECRET_NAME],
            "verbs": ["get", "patch"],
        }
    ]
    (binding,) = [b for b in of_kind(objects, "RoleBinding") if b["metadata"]["name"] == NAME]
    assert binding["roleRef"]["name"] == NAME
    assert [s["name"] for s in binding["subjects"]] == [NAME]
    # It reaches the database, as the services do.
    (database,) = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["metadata"]["name"] == "complaints-postgresql-from-complaints"
    ]
    (expression,) = database["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    labels = job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] in expression["values"]


def _image_of_the_services(objects: tuple[dict[str, Any], ...]) -> str:
    (intake,) = [
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "complaints-intake"
    ]
    return str(intake["spec"]["template"]["spec"]["containers"][0]["image"])


def test_its_script_makes_the_secret_the_pods_mount(
    objects: tuple[dict[str, Any], ...],
    tmp_path: Path,
) -> None:
    job = _cron_job(objects)
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (maintain,), (apply,) = pod["initContainers"], pod["containers"]
    mounted = Path(_env(objects)["COMPLAINTS_KEK_PATH"])  # where the pods read the KEK file
    copy = Path(next(e["value"] for e in maintain["env"] if e["name"] == "COMPLAINTS_KEK_PATH"))
    work = next(m["mountPath"] for m in maintain["volumeMounts"] if m["name"] == "work")
    assert copy.parent == Path(work)
    assert {"name": "work", "mountPath": work, "readOnly": True} in apply["volumeMounts"]
    secret_file = next(a for a in apply["command"] if a.startswith("--filename=")).split("=", 1)[1]

    # The Secret as the pods mount it, and a store whose keys it wraps.
    here = {mounted.parent: tmp_path / "run-kek", Path(work): tmp_path / "work"}
    for directory in here.values():
        directory.mkdir()
    kek_file = here[mounted.parent] / mounted.name
    settings = make_settings(
        f"sqlite:///{tmp_path / 'store.sqlite3'}",
        kek_path=kek_file,
        audit_key_path=tmp_path / "audit-signing-key.pem",
        environment="development",
    )
    KekFile.load(kek_file, create=True)
    asyncio.run(setup(settings))

    script = maintain["command"][-1]
    for there, local in here.items():
        script = script.replace(f"{there}/", f"{local}/")
    script = script.replace("python -m", f"{sys.executable} -m")
    env = {
        **os.environ,
        "COMPLAINTS_ENVIRONMENT": "development",
        "COMPLAINTS_DATABASE_URL": str(settings.database_url),
        "COMPLAINTS_KEK_PATH": str(here[copy.parent] / copy.name),
        "COMPLAINTS_KEK_ROTATION_DAYS": "1",
    }
    # The KEK in force is made "now"; a rotation day later it is due, but not yet.
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "stays in force" in done.stdout

    manifest = json.loads((here[Path(work)] / Path(secret_file).name).read_text())
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert manifest["metadata"]["name"] == SECRET_NAME
    # The key the pods mount the file under, holding the maintained copy.
    assert (
        base64.b64decode(manifest["data"][mounted.name])
        == (here[Path(work)] / copy.name).read_bytes()
    )
    # The mounted Secret was only read.
    assert KekFile(kek_file).current.id == KekFile(here[Path(work)] / copy.name).current.id
