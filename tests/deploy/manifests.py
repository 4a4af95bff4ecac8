"""deploy/kubernetes/ rendered as a cluster would get it: each overlay through `kubectl
kustomize` (offline), into its objects."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = [KUBERNETES / "base", *sorted((KUBERNETES / "overlays").iterdir())]
#: The schemas kubernetes-validate checks against: the oldest Kubernetes still supported.
KUBERNETES_VERSION = "1.32.0"


@cache
def render(overlay: Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def settings_env(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The settings every workload gets: the ConfigMap `complaints-env`."""
    (env,) = [
        c
        for c in of_kind(objects, "ConfigMap")
        if c["metadata"]["name"].startswith("complaints-env")
    ]
    return dict(env["data"])
