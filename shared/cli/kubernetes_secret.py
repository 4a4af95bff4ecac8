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
import binascii
import copy
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

#: Where Kubernetes mounts a pod's service-account token, CA and namespace.
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
TIMEOUT_SECONDS = 30.0
#: Who the Secret's managedFields name as its writer (the README's by-hand steps too).
FIELD_MANAGER = "complaints-kek-maintenance"


class SecretError(RuntimeError):
    """The Secret could not be read or written (a write that timed out may have landed)."""


def with_file(secret: dict[str, Any], key: str, content: bytes) -> dict[str, Any]:
    """`secret` as read (its metadata, resourceVersion included) with the file `key` set to
    `content`, and without kubectl's last-applied copy: what to write back (PUT, or `kubectl
    replace`), refused if the Secret changed since it was read."""
    written = copy.deepcopy(secret)
    written.get("metadata", {}).get("annotations", {}).pop(LAST_APPLIED, None)
    written["data"] = {**(written.get("data") or {}), key: base64.b64encode(content).decode()}
    return written


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
        try:
            namespace = (account / "namespace").read_text().strip()
        except OSError as exc:
            raise SecretError(f"cannot read this pod's namespace: {exc}") from None
        return cls(name, f"https://{host}:{port}", namespace, account / "token", account / "ca.crt")

    def read(self) -> dict[str, Any]:
        """The Secret as the API server has it now."""
        answer = self._send("GET", "read")
        try:
            found: dict[str, Any] = answer.json()
        except ValueError:
            raise SecretError(f"the API server's answer for {self.name} is not JSON") from None
        return found

    def file(self, secret: dict[str, Any], key: str) -> bytes:
        """The content of the file `key` in `secret`."""
        try:
            return base64.b64decode((secret.get("data") or {})[key], validate=True)
        except KeyError:
            raise SecretError(f"the Secret {self.name} holds no file {key!r}") from None
        except (binascii.Error, TypeError, ValueError) as exc:
            raise SecretError(f"the Secret {self.name}'s file {key!r}: {exc}") from None

    def write(self, secret: dict[str, Any], key: str, content: bytes) -> None:
        """Write the file `key` into `secret` as it was read (same resourceVersion): refused
        (SecretError) if the Secret changed since, and then nothing is written."""
        answer = self._send("PUT", "write", with_file(secret, key, content))
        if answer.status_code == httpx.codes.CONFLICT:
            raise SecretError(
                f"the Secret {self.name} changed while this ran (a rotation by hand?): nothing "
                "was written to it"
            )

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/secrets/{self.name}"

    def _send(self, method: str, what: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """One call to the API server; SecretError on any failure but a 409 (the caller's)."""
        try:
            token = self.token.read_text().strip()  # read afresh: projected tokens rotate
            context = ssl.create_default_context(cafile=str(self.ca))
            with httpx.Client(
                base_url=self.api,
                verify=context,
                headers={"Authorization": f"Bearer {token}"},
                timeout=TIMEOUT_SECONDS,
                trust_env=False,  # the API server is reached directly, never by a proxy
            ) as client:
                answer = client.request(
                    method, self._path, json=body, params={"fieldManager": FIELD_MANAGER}
                )
        except (OSError, ssl.SSLError, httpx.HTTPError) as exc:
            raise SecretError(f"could not {what} the Secret {self.name}: {exc}") from None
        if answer.is_success or answer.status_code == httpx.codes.CONFLICT:
            return answer
        hint = (
            " (the job's Role must allow get and update on it)"
            if answer.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN)
            else ""
        )
        raise SecretError(
            f"could not {what} the Secret {self.namespace}/{self.name}: HTTP "
            f"{answer.status_code} {answer.text[:300]}{hint}"
        )
