"""A KEK rotation without a window, where each host has its own copy of the KEK file (Kubernetes
pods, each with the Secret as synced to it): the new KEK is staged first, held by every copy
but wrapping nothing, and is put in force only once every running process reports holding it,
so no process ever meets a key wrapped by a KEK it lacks. `maintain`, run daily, walks a KEK's
life on its own: staged when due, in force once held everywhere, destroyed after the
retention."""

from __future__ import annotations

import asyncio
import base64
import http.server
import ipaddress
import json
import shutil
import ssl
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import kubernetes_validate
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import delete, insert, select

from services.intake.main import create_app
from shared.cli.kek import command as kek_command
from shared.cli.kek import maintain_secret
from shared.cli.kubernetes_secret import LAST_APPLIED, KubernetesSecret, SecretError
from shared.domain.clock import FixedClock
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import FILE_HEADER, Kek, KekFile, KekFileError, KekNotHeld, lock_path
from shared.store.lease import holder_name
from shared.store.tables import kek_holders as holders_table
from shared.store.tables import wrapped_keys
from tests.conftest import TokenFactory
from tests.deploy.manifests import KUBERNETES_VERSION
from tests.integration import test_key_store as key_store
from tests.integration.conftest import Api, serving
from tests.integration.test_erasure import SECRETS, _body
from tests.integration.test_key_store import _description, _opened, _store
from tests.integration.test_metrics import scrape, value

# The KEK file of this test's own (as the operator and the service under test have it: pod
# A's copy), and the settings that name it: test_key_store's.
kek_path = key_store.kek_path
settings = key_store.settings


async def _wrapping_keks(store: ComplaintStore) -> set[str]:
    """The KEKs the key store's rows are wrapped by."""
    async with store.engine.connect() as conn:
        return set((await conn.execute(select(wrapped_keys.c.kek_id))).scalars())


async def test_a_staged_kek_is_put_in_force_only_once_every_process_holds_it(
    api: Api, settings: Settings, kek_path: Path, tmp_path: Path, clock: FixedClock
) -> None:
    store = _store(api)
    pod_a = holder_name(api.client._transport.app)  # type: ignore[attr-defined]
    # Pod B: another process with its own copy of the KEK file, as its Secret volume has it.
    b_path = tmp_path / "pod-b" / kek_path.name
    b_path.parent.mkdir()
    shutil.copy2(kek_path, b_path)
    old = KekFile(kek_path).current
    first = (await api.accept(_body("cust-stage-1"))).json()["id"]

    staged = await kek_command(settings, "stage", store)
    new = KekFile(kek_path).staged
    assert new is not None and new.id in staged and KekFile(kek_path).current.id == old.id
    # Staged, it wraps nothing: a new customer's key is still wrapped by the KEK in force.
    second = (await api.accept(_body("cust-stage-2"))).json()["id"]
    assert await _wrapping_keks(store) == {old.id}

    async with _opened(settings.model_copy(update={"kek_path": b_path})) as pod_b:
        await store.report_keks(pod_a)
        await pod_b.report_keks("pod-b")
        # A process last heard from long ago (it died) does not hold the rotation back.
        await _gone(store, "pod-gone", old)

        # Pod B has not got the staged KEK yet: the rotation refuses, naming it, and changes
        # nothing.
        with pytest.raises(KekNotHeld, match="1 running process") as refused:
            await kek_command(settings, "rotate", store)
        assert "pod-b" in str(refused.value) and pod_a not in str(refused.value)
        assert "pod-gone" not in str(refused.value)
        assert KekFile(kek_path).staged == new and await _wrapping_keks(store) == {old.id}
        waited = await kek_command(settings, "maintain", store)
        assert waited.startswith("not yet: ") and "pod-b" in waited
        assert KekFile(kek_path).staged == new

        # Pod B's Secret is synced: it holds the staged KEK (still staged in its copy).
        shutil.copy2(kek_path, b_path)
        await pod_b.report_keks("pod-b")
        rotated = await kek_command(settings, "rotate", store)
        assert rotated == f"rotated to KEK {new.id}: 2 customer key(s) re-wrapped"
        assert KekFile(kek_path).current.id == new.id and KekFile(kek_path).staged is None
        assert await _wrapping_keks(store) == {new.id}

        # No window: pod B, whose copy still has the new KEK staged, reads every complaint,
        # its keys now wrapped by that KEK.
        assert KekFile(b_path).staged == new
        for cid in (first, second):
            assert _description(await pod_b.get(UUID(cid))) == SECRETS["description"]
    # And pod A, which wrote the file, reads them through the API.
    for cid in (first, second):
        shown = (await api.get(f"/complaints/{cid}")).json()
        assert shown["description"] == SECRETS["description"]


async def _gone(store: ComplaintStore, holder: str, kek: Kek) -> None:
    """A process that reported holding `kek` (in force) long ago, and died."""
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(holders_table).values(
                holder=holder, kek_ids=[kek.id], in_force=kek.id, seen_at=0.0
            )
        )


async def test_maintain_stages_when_due_puts_in_force_then_destroys_after_the_retention(
    store: ComplaintStore, settings: Settings, kek_path: Path, clock: FixedClock
) -> None:
    first = KekFile(kek_path).current
    clock.now = first.created_at + timedelta(days=89)
    said = await kek_command(settings, "maintain", store)
    assert said.splitlines()[0] == (
        f"KEK {first.id} stays in force; the next is staged from "
        f"{first.created_at + timedelta(days=90):%Y-%m-%d}"
    )
    assert KekFile(kek_path).staged is None

    clock.advance(timedelta(days=1))
    said = await kek_command(settings, "maintain", store)
    staged = KekFile(kek_path).staged
    assert staged is not None and said.startswith(f"staged KEK {staged.id}")
    assert KekFile(kek_path).current.id == first.id

    clock.advance(timedelta(days=1))  # the next day, a service process holds it
    await store.report_keks("service-a")
    said = await kek_command(settings, "maintain", store)
    assert said.splitlines() == [
        f"rotated to KEK {staged.id}: 0 customer key(s) re-wrapped",
        "destroyed 0 KEK(s)",
    ]
    keks = KekFile(kek_path)
    assert keks.current.id == staged.id and keks.current.created_at == clock()
    status = await kek_command(settings, "status", store)
    retired = first.id + f"  since {first.created_at:%Y-%m-%d}  superseded {clock():%Y-%m-%d}"
    assert retired in status

    clock.advance(timedelta(days=settings.kek_retention_days))
    await store.report_keks("service-a")  # its copy of the file: the new KEK in force
    said = await kek_command(settings, "maintain", store)
    assert said.splitlines()[-1] == f"destroyed 1 KEK(s) {first.id}"
    assert [k.id for k in KekFile(kek_path).keks] == [staged.id]


async def test_every_service_process_reports_the_keks_it_holds(
    settings: Settings, clock: FixedClock, token: TokenFactory, kek_path: Path
) -> None:
    app = create_app(settings, clock=clock)
    async with serving(app, token) as api:
        store = _store(api)

        async def rows() -> list[tuple[str, list[str]]]:
            async with store.engine.connect() as conn:
                found = await conn.execute(select(holders_table.c.holder, holders_table.c.kek_ids))
                return [(row.holder, list(row.kek_ids)) for row in found]

        for _ in range(100):  # the first report is made as the process starts
            if await rows():
                break
            await asyncio.sleep(0.05)
        assert await rows() == [(holder_name(app), [KekFile(kek_path).current.id])]
        # A KEK staged in its file is in its next report.
        staged, _ = await store.stage_kek()
        await store.report_keks(holder_name(app))
        assert await rows() == [(holder_name(app), sorted(k.id for k in KekFile(kek_path).keks))]
        assert staged.id in (await rows())[0][1]


def test_only_the_last_kek_of_the_file_may_be_staged(tmp_path: Path, clock: FixedClock) -> None:
    path = tmp_path / "keks"
    staged = Kek.new(clock(), staged=True)
    path.write_text(staged.line())
    with pytest.raises(KekFileError, match="holds no key-encryption key in force"):
        KekFile(path)
    path.write_text(staged.line() + Kek.new(clock()).line())
    with pytest.raises(KekFileError, match="only its last KEK may be staged"):
        KekFile(path)
    path.write_text(Kek.new(clock()).line() + staged.line())
    keks = KekFile(path)
    assert keks.staged == staged and keks.current != staged
    assert keks.stage(clock()) == (staged, False)  # staged again: the same one


async def test_the_kek_file_as_a_kubernetes_secret(settings: Settings, kek_path: Path) -> None:
    manifest = json.loads(await kek_command(settings, "secret", secret_name="complaints-kek"))
    assert manifest["kind"] == "Secret" and manifest["metadata"] == {"name": "complaints-kek"}
    assert list(manifest["data"]) == [kek_path.name]
    held = await asyncio.to_thread(kek_path.read_bytes)
    assert base64.b64decode(manifest["data"][kek_path.name]) == held


async def test_metrics_say_how_far_past_its_rotation_the_kek_is_and_how_long_one_is_staged(
    api: Api, settings: Settings, kek_path: Path, clock: FixedClock
) -> None:
    current = KekFile(kek_path).current
    clock.now = current.created_at + timedelta(days=settings.kek_rotation_days)
    assert value(await scrape(api), "complaints_kek_rotation_overdue_seconds") == 0
    clock.advance(timedelta(hours=5))
    assert value(await scrape(api), "complaints_kek_rotation_overdue_seconds") == 5 * 3600
    assert value(await scrape(api), "complaints_kek_staged_seconds") == 0
    await kek_command(settings, "stage", _store(api))
    clock.advance(timedelta(hours=2))
    assert value(await scrape(api), "complaints_kek_staged_seconds") == 2 * 3600


async def test_no_staged_kek_is_put_in_force_while_no_process_reports(
    store: ComplaintStore, settings: Settings, kek_path: Path
) -> None:
    """Reports that fail everywhere (or services that do not run) are not taken for "every
    process holds it": only `--none-running` says that none runs."""
    await kek_command(settings, "stage", store)
    staged = KekFile(kek_path).staged
    assert staged is not None
    with pytest.raises(KekNotHeld, match="no running service process has reported"):
        await kek_command(settings, "rotate", store)
    assert KekFile(kek_path).staged == staged
    said = await kek_command(settings, "rotate", store, none_running=True)
    assert said.startswith(f"rotated to KEK {staged.id}")


async def test_a_rotation_whose_file_was_not_kept_is_finished_not_undone(
    api: Api, settings: Settings, kek_path: Path, tmp_path: Path
) -> None:
    """The daily job put the staged KEK in force and re-wrapped the keys, then could not write
    the file back (the Secret changed, the API failed): the KEK is still staged in the file.
    The next run finishes that rotation under the staged KEK, rather than re-wrapping every
    key back under the old one."""
    store = _store(api)
    for customer in ("cust-crash-1", "cust-crash-2"):
        assert (await api.accept(_body(customer))).status_code == 201
    await kek_command(settings, "stage", store)
    kept = tmp_path / "as-the-secret-still-has-it"
    shutil.copy2(kek_path, kept)
    staged = KekFile(kek_path).staged
    assert staged is not None
    await store.report_keks(holder_name(api.client._transport.app))  # type: ignore[attr-defined]
    assert (await kek_command(settings, "rotate", store)).startswith(f"rotated to KEK {staged.id}")
    assert await _wrapping_keks(store) == {staged.id}
    shutil.copy2(kept, kek_path)  # the file as it was before: the KEK staged again

    said = await kek_command(settings, "maintain", store)
    assert said.splitlines()[0] == (
        f"finished the rotation to KEK {staged.id}: 0 customer key(s) re-wrapped"
    )
    assert KekFile(kek_path).current.id == staged.id and KekFile(kek_path).staged is None
    assert await _wrapping_keks(store) == {staged.id}


async def test_a_kek_a_running_process_still_has_in_force_is_not_destroyed(
    store: ComplaintStore, settings: Settings, kek_path: Path, tmp_path: Path, clock: FixedClock
) -> None:
    """A pod whose copy of the file was not synced still wraps new keys under the KEK it has
    in force: however long superseded, that KEK is kept while the pod reports it."""
    old = KekFile(kek_path).current
    stale = tmp_path / "stale-pod" / kek_path.name
    stale.parent.mkdir()
    shutil.copy2(kek_path, stale)
    await kek_command(settings, "rotate", store, none_running=True)
    clock.advance(timedelta(days=settings.kek_retention_days + 1))
    async with _opened(settings.model_copy(update={"kek_path": stale})) as pod:
        await pod.report_keks("stale-pod")
        assert await kek_command(settings, "purge", store) == "destroyed 0 KEK(s)"
        assert old.id in {k.id for k in KekFile(kek_path).keks}
        async with store.engine.begin() as conn:  # it is replaced: its row no longer counts
            await conn.execute(delete(holders_table).where(holders_table.c.holder == "stale-pod"))
    assert await kek_command(settings, "purge", store) == f"destroyed 1 KEK(s) {old.id}"


# -- the KEK file as a Kubernetes Secret (the CronJob's `maintain --kubernetes-secret`) ----
class _ApiServer:
    """An API server holding one Secret, over TLS, as a pod reaches it: GET answers it with its
    resourceVersion; PUT replaces it only with the resourceVersion it is at now (409
    otherwise) and a bearer token. What a real one does for these two calls."""

    def __init__(self, tmp_path: Path, secret: dict[str, Any]) -> None:
        self.secret = secret
        self.version = 1
        #: Someone else writes the Secret right after the next GET is answered.
        self.changed_after_the_next_read = False
        self.puts: list[dict[str, Any]] = []
        self.writers: list[dict[str, list[str]]] = []  # each PUT's query
        self.token = "token-of-the-pod"
        self.account = tmp_path / "serviceaccount"
        self.account.mkdir()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        (self.account / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.account / "token").write_text(self.token)
        (self.account / "namespace").write_text("complaints\n")
        pem = tmp_path / "server.pem"
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            + cert.public_bytes(serialization.Encoding.PEM)
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def current(self) -> dict[str, Any]:
        return {
            **self.secret,
            "metadata": {**self.secret["metadata"], "resourceVersion": str(self.version)},
        }

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        api = self
        path = "/api/v1/namespaces/complaints/secrets/complaints-kek"

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _allowed(self) -> bool:
                where = urllib.parse.urlsplit(self.path).path
                if where != path or self.headers["Authorization"] != f"Bearer {api.token}":
                    self._answer(403, {"kind": "Status", "code": 403})
                    return False
                return True

            def do_GET(self) -> None:
                if self._allowed():
                    self._answer(200, api.current())
                    if api.changed_after_the_next_read:
                        api.changed_after_the_next_read = False
                        api.version += 1

            def do_PUT(self) -> None:
                if not self._allowed():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body["metadata"]["resourceVersion"] != str(api.version):
                    self._answer(409, {"kind": "Status", "code": 409, "reason": "Conflict"})
                    return
                api.puts.append(body)
                api.writers.append(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
                api.version += 1
                api.secret = {**body, "metadata": {**body["metadata"]}}
                self._answer(200, api.current())

        return Handler

    def __enter__(self) -> _ApiServer:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def secret_of_the_pod(self, monkeypatch: pytest.MonkeyPatch) -> KubernetesSecret:
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(self.server.server_address[1]))
        return KubernetesSecret.in_cluster("complaints-kek", self.account)


def _secret_holding(content: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "complaints-kek",
            "namespace": "complaints",
            "labels": {"team": "ops"},
            "annotations": {LAST_APPLIED: '{"data": "every KEK, destroyed ones too"}'},
        },
        "type": "Opaque",
        "data": {"key-encryption-keys": base64.b64encode(content).decode()},
    }


async def test_the_daily_job_maintains_the_kek_secret_and_never_overwrites_a_change(
    settings: Settings,
    kek_path: Path,
    tmp_path: Path,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Secret holds a KEK in force long enough to be due.
    due = Kek.new(datetime.now(UTC) - timedelta(days=settings.kek_rotation_days + 1))
    original = due.line().encode()
    copy = tmp_path / "work" / kek_path.name  # the job's COMPLAINTS_KEK_PATH (an emptyDir)
    copy.parent.mkdir()
    job = settings.model_copy(update={"kek_path": copy})
    with _ApiServer(tmp_path, _secret_holding(original)) as api:
        secret = api.secret_of_the_pod(monkeypatch)
        said = await maintain_secret(job, secret)
        assert said.splitlines()[0].startswith("staged KEK ")
        staged_id = said.split()[2].rstrip(";")
        assert said.splitlines()[-1] == "wrote the KEK file to the Secret complaints-kek"
        (put,) = api.puts
        written = base64.b64decode(put["data"]["key-encryption-keys"])
        assert written.startswith(FILE_HEADER.encode()) and original in written
        assert written.rstrip().endswith(b" staged")
        # Written at the version it was read at; its labels kept; kubectl's last-applied copy
        # (which would keep destroyed KEKs) dropped.
        assert put["metadata"]["resourceVersion"] == "1"
        assert put["metadata"]["labels"] == {"team": "ops"}
        assert LAST_APPLIED not in put["metadata"]["annotations"]
        assert not copy.exists() and not lock_path(copy).exists()

        # The next day, no process reports holding the staged KEK (none runs here): unchanged.
        said = await maintain_secret(job, secret)
        assert said.splitlines()[0].startswith("not yet: ")
        assert said.splitlines()[-1] == "the Secret complaints-kek is unchanged"
        assert len(api.puts) == 1

        # A pod now holds the staged KEK, so the next run puts it in force; but someone changes
        # the Secret while that run works on its copy: nothing is written.
        pods_copy = tmp_path / "pod-a" / kek_path.name
        pods_copy.parent.mkdir()
        pods_copy.write_bytes(written)
        async with _opened(settings.model_copy(update={"kek_path": pods_copy})) as pod:
            await pod.report_keks("pod-a")
        before = api.current()
        api.changed_after_the_next_read = True  # a rotation by hand, applied meanwhile
        with pytest.raises(SecretError, match="changed while this ran") as refused:
            await maintain_secret(job, secret)
        assert str(refused.value).startswith("rotated to KEK ")  # what it did, in its log
        assert api.secret["data"] == before["data"] and len(api.puts) == 1
        assert not copy.exists()

        # The retry starts from the Secret as it is now (the KEK still staged there) and puts
        # that same KEK in force: written back this time. (With keys wrapped under it by the
        # refused run, it finishes that rotation: test_a_rotation_whose_file_was_not_kept...)
        said = await maintain_secret(job, secret)
        assert said.splitlines()[0].startswith(f"rotated to KEK {staged_id}")
        assert said.splitlines()[-1] == "wrote the KEK file to the Secret complaints-kek"
        final = base64.b64decode(api.secret["data"]["key-encryption-keys"])
        assert b" staged" not in final and len(api.puts) == 2
        for body in api.puts:
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
        assert api.writers == [{"fieldManager": ["complaints-kek-maintenance"]}] * 2


async def test_the_daily_job_refuses_to_overwrite_an_existing_kek_file(
    settings: Settings, kek_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        _ApiServer(tmp_path, _secret_holding(b"")) as api,
        pytest.raises(KekFileError, match="does not exist yet"),
    ):
        await maintain_secret(settings, api.secret_of_the_pod(monkeypatch))
    assert KekFile(kek_path).current is not None  # the file COMPLAINTS_KEK_PATH named: kept


async def test_a_kek_put_in_force_at_once_is_refused_while_processes_run_on_several_hosts(
    store: ComplaintStore, settings: Settings, kek_path: Path
) -> None:
    """Without a staged KEK, `rotate` puts a new one in force at once: safe only where every
    process reads this one file, which is not so for processes on several hosts (pods)."""
    await store.report_keks("pod-1:7:a")
    await store.report_keks("pod-2:7:a")
    before = KekFile(kek_path).keks
    with pytest.raises(KekNotHeld, match=r"2 hosts \(pod-1, pod-2\).*Stage it first"):
        await kek_command(settings, "rotate", store)
    assert KekFile(kek_path).keks == before
    said = await kek_command(settings, "rotate", store, shared_file=True)
    assert said.startswith("rotated to KEK ") and len(KekFile(kek_path).keks) == 2


async def test_the_kek_file_written_into_the_secret_as_read(
    settings: Settings, kek_path: Path, tmp_path: Path
) -> None:
    """`secret --into`: the Secret `kubectl get -o json` read, its file replaced, its
    resourceVersion kept (so `kubectl replace` is refused if it changed since), and kubectl's
    last-applied copy of the old file gone."""
    read = _secret_holding(b"an older file")
    read["metadata"]["resourceVersion"] = "41"
    saved = tmp_path / "secret.json"
    await asyncio.to_thread(saved.write_text, json.dumps(read))
    written = json.loads(await kek_command(settings, "secret", into=saved))
    assert written["metadata"]["resourceVersion"] == "41"
    assert written["metadata"]["labels"] == {"team": "ops"}
    assert LAST_APPLIED not in written["metadata"]["annotations"]
    held = await asyncio.to_thread(kek_path.read_bytes)
    assert base64.b64decode(written["data"]["key-encryption-keys"]) == held
    kubernetes_validate.validate(written, KUBERNETES_VERSION, strict=True)
