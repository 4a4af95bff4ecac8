"""The key-encryption keys (KEKs) that wrap the customers' keys: `python -m shared.cli.kek CMD`.

- `create`: write the KEK file (`COMPLAINTS_KEK_PATH`) with a first KEK, before the first
  setup in production (the setup step does it by itself in development).
- `rotate`: add a new KEK and re-wrap every customer key under it (and re-seal the webhook
  subscriptions' signing secrets under it). Safe while the services run on hosts that read
  this one file (they read it again when it changes; `--shared-file` says so when they run on
  several hosts); where each host has its own copy, stage first. If a rotation stopped
  half-way, running it again finishes that one instead of starting another. Holds the KEK
  file's lock (`<file>.lock`) throughout, so concurrent rotations and purges wait for each
  other. If a KEK is staged, that
  one is put in force, and only once every running service process holds it (and one has said
  so: `--none-running` when no service runs, on purpose).
- `stage`: add a new KEK that wraps nothing yet, for hosts that each have their own copy of
  the file (Kubernetes pods): give every host the file, then `rotate` puts it in force.
- `maintain`: what a daily schedule runs: put a staged KEK in force once every process holds
  it, else stage one when the KEK in force is `COMPLAINTS_KEK_ROTATION_DAYS` (90) old; then
  `purge`. With `--kubernetes-secret NAME` (the CronJob of deploy/kubernetes) the KEK file is
  that Secret's: copied to COMPLAINTS_KEK_PATH (which must not exist yet), maintained, written
  back unless the Secret changed meanwhile, and the copy removed.
- `purge`: destroy the KEKs superseded more than `COMPLAINTS_KEK_RETENTION_DAYS` (30) ago:
  run it daily. From then on no copy of the database older than that (a backup, a WAL
  segment) yields any customer's key, erased or not.
- `status`: each KEK, when it was superseded, when `purge` destroys it, and the keys it wraps.
- `secret`: the KEK file as a Kubernetes Secret (JSON) named `--secret-name`, the key named as
  the file; with `--into FILE` (the Secret as `kubectl get -o json` read it), that Secret with
  the file replaced and its resourceVersion kept, for `kubectl replace -f -` (refused if the
  Secret changed meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

from shared.cli.kubernetes_secret import KubernetesSecret, SecretError, with_file
from shared.settings import Settings
from shared.store.facade import ComplaintStore
from shared.store.keystore import KekFile, KekFileError, KekMissing, KekNotHeld, lock_path
from shared.webhooks.subscriptions import reseal_secrets

#: The Secret that holds the KEK file on Kubernetes (deploy/kubernetes).
SECRET_NAME = "complaints-kek"


async def command(
    settings: Settings,
    name: str,
    store: ComplaintStore | None = None,
    *,
    secret_name: str = SECRET_NAME,
    into: Path | None = None,
    none_running: bool = False,
    shared_file: bool = False,
) -> str:
    """Run one command; what it did, to print. `store`: an open store to use (tests)."""
    if name == "create":
        KekFile.load(settings.kek_path, create=True)
        return f"KEK file ready: {settings.kek_path} (mode 600; keep it out of database backups)"
    if name == "secret":
        return secret_manifest(settings, secret_name, into)
    own = store is None
    store = store or ComplaintStore(settings)
    if own:
        await store.open()
    try:
        if name == "rotate":
            return await _rotate(store, none_running=none_running, shared_file=shared_file)
        if name == "stage":
            return await _stage(store)
        if name == "purge":
            return await _purge(store)
        if name == "maintain":
            return await _maintain(store, settings, none_running=none_running)
        return await _status(store, settings)
    finally:
        if own:
            await store.close()


def secret_manifest(settings: Settings, name: str, into: Path | None = None) -> str:
    """The KEK file as a Kubernetes Secret, the key named as the file (as `kubectl create
    secret generic NAME --from-file=FILE` names it). `into`: the Secret as read (`kubectl get
    secret NAME -o json`), its file replaced, its resourceVersion kept: for `kubectl replace`,
    which is refused if the Secret changed since."""
    KekFile(settings.kek_path)  # refuses a missing or malformed file, saying so
    content = settings.kek_path.read_bytes()
    if into is not None:
        read = json.loads(into.read_text())
        return json.dumps(with_file(read, settings.kek_path.name, content), indent=2)
    manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque"}
    return json.dumps(with_file(manifest, settings.kek_path.name, content), indent=2)


async def maintain_secret(settings: Settings, secret: KubernetesSecret) -> str:
    """`maintain` on the KEK file kept in a Kubernetes Secret: on a copy made at
    COMPLAINTS_KEK_PATH (mode 600, removed after), written back if it changed, and only if the
    Secret did not change meanwhile."""
    path = settings.kek_path
    if path.exists():
        raise KekFileError(
            f"{path} exists: with --kubernetes-secret, COMPLAINTS_KEK_PATH names where the copy "
            "of the Secret's file is made (a path that does not exist yet, e.g. in an emptyDir)"
        )
    read = await asyncio.to_thread(secret.read)
    before = secret.file(read, path.name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, before)
        finally:
            os.close(fd)
        said = await command(settings, "maintain")
        after = await asyncio.to_thread(path.read_bytes)
    finally:
        path.unlink(missing_ok=True)
        lock_path(path).unlink(missing_ok=True)
    if after == before:
        return f"{said}\nthe Secret {secret.name} is unchanged"
    try:
        await asyncio.to_thread(secret.write, read, path.name, after)
    except SecretError as exc:
        # What was done in the database stands: the next run (the Job's retry, or the next
        # day's) starts from the Secret as it is then and finishes it (a KEK put in force in
        # the database but still staged in the Secret is put in force again).
        raise SecretError(f"{said}\n{exc}; the next run starts from what it holds then") from None
    return f"{said}\nwrote the KEK file to the Secret {secret.name}"


async def _rotate(
    store: ComplaintStore, *, none_running: bool = False, shared_file: bool = False
) -> str:
    kek, count, finished = await store.rotate_kek(
        none_running=none_running, shared_file=shared_file
    )
    secrets = await reseal_secrets(store)
    what = "finished the rotation to" if finished else "rotated to"
    resealed = f", {secrets} webhook secret(s) re-sealed" if secrets else ""
    return f"{what} KEK {kek.id}: {count} customer key(s) re-wrapped{resealed}"


async def _stage(store: ComplaintStore) -> str:
    kek, new = await store.stage_kek()
    what = "staged" if new else "already staged:"
    return (
        f"{what} KEK {kek.id}; it wraps nothing yet. Give every host the file (on Kubernetes: "
        "apply it to the Secret), then `rotate` puts it in force once every process holds it"
    )


async def _purge(store: ComplaintStore) -> str:
    await reseal_secrets(store)  # none is left sealed under a KEK about to go
    gone = await store.purge_keks()
    return f"destroyed {len(gone)} KEK(s)" + "".join(f" {k.id}" for k in gone)


async def _maintain(
    store: ComplaintStore, settings: Settings, *, none_running: bool = False
) -> str:
    """One daily step of the KEKs' life: put a staged KEK in force once every process holds
    it, or stage one when the KEK in force is due; then purge."""
    keks = store.app.keystore.keks
    done = []
    if keks.staged is not None:
        try:
            done.append(await _rotate(store, none_running=none_running))
        except KekNotHeld as exc:
            done.append(f"not yet: {exc}")
    elif store.clock() - keks.current.created_at >= timedelta(days=settings.kek_rotation_days):
        done.append(await _stage(store))
    else:
        due = keks.current.created_at + timedelta(days=settings.kek_rotation_days)
        done.append(f"KEK {keks.current.id} stays in force; the next is staged from {due:%Y-%m-%d}")
    done.append(await _purge(store))
    return "\n".join(done)


async def _status(store: ComplaintStore, settings: Settings) -> str:
    keks = store.app.keystore.keks
    in_use = await asyncio.to_thread(store.app.keystore.kek_ids)
    lines = []
    for kek in keks.keks:
        retired = keks.retired_at(kek)
        due = keks.destroyed_from(kek, timedelta(days=settings.kek_retention_days))
        if kek.staged:
            when = "staged: held, wraps nothing until `rotate` puts it in force"
        elif retired and due:
            when = f"superseded {retired:%Y-%m-%d}, destroyed by purge from {due:%Y-%m-%d}"
        else:
            when = "current"
        wraps = "wraps live keys" if kek.id in in_use else "wraps no live key"
        lines.append(f"{kek.id}  since {kek.created_at:%Y-%m-%d}  {when}  {wraps}")
    return "\n".join(lines)


def arguments() -> argparse.ArgumentParser:
    """The command line `python -m shared.cli.kek` takes."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command", choices=["create", "stage", "rotate", "purge", "maintain", "status", "secret"]
    )
    parser.add_argument("--secret-name", default=SECRET_NAME, help="for `secret`")
    parser.add_argument(
        "--into",
        type=Path,
        metavar="FILE",
        help="for `secret`: the Secret as read (kubectl get secret NAME -o json); prints it with "
        "the file replaced and its resourceVersion kept, for `kubectl replace -f -`",
    )
    parser.add_argument(
        "--none-running",
        action="store_true",
        help="for `rotate` and `maintain`: no service runs (on purpose), so none reports "
        "holding the staged KEK",
    )
    parser.add_argument(
        "--shared-file",
        action="store_true",
        help="for `rotate` without a staged KEK: every host's services read this very file",
    )
    parser.add_argument(
        "--kubernetes-secret",
        metavar="NAME",
        help="for `maintain`, in a Kubernetes pod: the KEK file is this Secret's "
        "(COMPLAINTS_KEK_PATH then names where its copy is made)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = arguments()
    args = parser.parse_args(argv)
    for option, commands in {
        "kubernetes_secret": ("maintain",),
        "none_running": ("rotate", "maintain"),
        "shared_file": ("rotate",),
        "into": ("secret",),
    }.items():
        if getattr(args, option) and args.command not in commands:
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} goes with {' or '.join(commands)} only")
    settings = Settings()
    settings.check()
    try:
        if args.kubernetes_secret:
            secret = KubernetesSecret.in_cluster(args.kubernetes_secret)
            said = asyncio.run(maintain_secret(settings, secret))
        else:
            said = asyncio.run(
                command(
                    settings,
                    args.command,
                    secret_name=args.secret_name,
                    into=args.into,
                    none_running=args.none_running,
                    shared_file=args.shared_file,
                )
            )
        print(said)
    except (KekFileError, KekMissing, KekNotHeld, SecretError) as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
