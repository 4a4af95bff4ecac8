"""The KEK file kept as a Kubernetes Secret, read and written through the API server from inside
the cluster, with the pod's service-account token (`python -m shared.cli.kek maintain
--kubernetes-secret NAME`, the CronJob of deploy/kubernetes).

It is written back with the `resourceVersion` it was read at, so a change made meanwhile (a
rotation by hand) is never overwritten: the API server answers 409 and nothing is written.
The `kubectl.kubernetes.io/last-applied-configuration` annotation is dropped on the way: a
client-side `kubectl apply` keeps the whole Secret in it, destroyed KEKs included.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

#: Where Kubernetes mounts a pod's service-account token, CA and namespace.
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
TIMEOUT_SECONDS = 30.0


class SecretError(RuntimeError):
    """The Secret could not be read or written; nothing was written."""


@dataclass(frozen=True)
class KubernetesSecret:
    """One Secret of this pod's namespace, through the API server."""

    name: str
    api: str
    namespace: str
    token: Path
    ca: Path

    @classmethod
    def in_cluster(cls, name: str, account: Path = SERVICE_ACCOUNT) -> KubernetesSecret:
        """The Secret `name` as this pod reaches it (KUBERNETES_SERVICE_HOST/PORT, the token
        mounted at `account`)."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if not host or not (account / "token").exists():
            raise SecretError(
                "not in a Kubernetes pod with a service-account token (KUBERNETES_SERVICE_HOST "
                f"unset or no {account / 'token'}): --kubernetes-secret works only there"
            )
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        namespace = (account / "namespace").read_text().strip()
        return cls(name, f"https://{host}:{port}", namespace, account / "token", account / "ca.crt")

    def read(self) -> dict[str, Any]:
        """The Secret as the API server has it now."""
        with self._client() as client:
            answer = self._send(client.get, "read")
        self._check(answer, "read")
        found: dict[str, Any] = answer.json()
        return found

    def file(self, secret: dict[str, Any], key: str) -> bytes:
        """The content of the file `key` in `secret`."""
        try:
            return base64.b64decode(secret.get("data", {})[key])
        except KeyError:
            raise SecretError(f"the Secret {self.name} holds no file {key!r}") from None

    def write(self, secret: dict[str, Any], key: str, content: bytes) -> None:
        """Write the file `key` into `secret` as it was read (same resourceVersion): refused
        (SecretError) if the Secret changed since."""
        metadata = secret["metadata"]
        annotations = {
            k: v for k, v in metadata.get("annotations", {}).items() if k != LAST_APPLIED
        }
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "resourceVersion": metadata["resourceVersion"],
                "labels": metadata.get("labels", {}),
                "annotations": annotations,
            },
            "type": secret.get("type", "Opaque"),
            "data": {**secret.get("data", {}), key: base64.b64encode(content).decode("ascii")},
        }
        with self._client() as client:
            answer = self._send(partial(client.put, json=body), "write")
        if answer.status_code == httpx.codes.CONFLICT:
            raise SecretError(
                f"the Secret {self.name} changed while this ran (a rotation by hand?): nothing "
                "was written to it; the next run starts from what it holds now"
            )
        self._check(answer, "write")

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"

    def _client(self) -> httpx.Client:
        token = self.token.read_text().strip()  # read afresh: projected tokens rotate
        return httpx.Client(
            base_url=self.api,
            verify=ssl.create_default_context(cafile=str(self.ca)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_SECONDS,
        )

    def _send(self, method: Callable[[str], httpx.Response], what: str) -> httpx.Response:
        try:
            return method(self._path)
        except httpx.HTTPError as exc:
            raise SecretError(f"could not {what} the Secret {self.name}: {exc}") from None

    def _check(self, answer: httpx.Response, what: str) -> None:
        if answer.is_success:
            return
        raise SecretError(
            f"could not {what} the Secret {self.namespace}/{self.name}: HTTP "
            f"{answer.status_code} {answer.text[:300]} (its Role must allow get and update)"
        )
