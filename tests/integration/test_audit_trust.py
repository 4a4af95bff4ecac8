"""A proof the operator cannot rewrite: the verifier trusts only the key the regulator pinned
(and the successors it announced), and checkpoints the regulator kept expose a history
rewritten and re-signed even with the operator's own key."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.intake.main import create_app
from shared.audit.chain import ChainProjection
from shared.audit.checkpoints import Checkpoints, KeyRetired, load_key, public_pem
from shared.audit.verify import (
    checkpoint_message,
    fingerprint,
    record_hash,
    trailer_message,
    verify,
)
from shared.cli.rotate_audit_key import rotate
from shared.domain.clock import FixedClock
from shared.settings import Settings
from tests.conftest import AUDIT_KEY, TokenFactory, pinned_key
from tests.integration.conftest import Api, catch_up, serving
from tests.integration.test_audit import _record_some, _signed_head

VERIFY = Path(__file__).resolve().parents[2] / "shared" / "audit" / "verify.py"

Lines = list[bytes]


async def _export(api: Api, **params: str) -> Lines:
    answer = await api.client.get("/audit/export", params=params, headers=api.headers("regulator"))
    assert answer.status_code == 200, answer.text
    return answer.content.splitlines(keepends=True)


async def _checkpoints(api: Api) -> dict[str, Any]:
    return (await api.get("/audit/checkpoints", role="regulator")).json()


async def _recorded(api: Api, clock: FixedClock) -> tuple[Lines, dict[str, Any]]:
    await _record_some(api, clock)
    await _signed_head(api)
    return await _export(api), await _checkpoints(api)


def _sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode()


def _checkpoint(
    key: Ed25519PrivateKey, line: bytes, successor: Ed25519PrivateKey | None = None
) -> dict[str, Any]:
    """A checkpoint of the chain at an export line, signed by `key` (announcing `successor`)."""
    record = json.loads(line)
    signed_at = record["at"]
    announced = None
    checkpoint: dict[str, Any] = {"position": record["position"], "hash": record["hash"]}
    if successor is not None:
        announced = fingerprint(successor.public_key())
        checkpoint["successor"] = {"public_key": public_pem(successor), "fingerprint": announced}
    message = checkpoint_message(record["position"], record["hash"], signed_at, announced)
    return {**checkpoint, "signed_at": signed_at, "signature": _sign(key, message)}


def _resigned_trailer(lines: Lines, key: Ed25519PrivateKey, **changes: Any) -> Lines:
    records = [json.loads(line) for line in lines[:-1]]
    trailer = {**json.loads(lines[-1])["trailer"], **changes}
    trailer.update(
        count=len(records),
        first_prev_hash=records[0]["prev_hash"] if records else None,
        last_hash=records[-1]["hash"] if records else None,
        last_position=records[-1]["position"] if records else None,
    )
    trailer["signature"] = _sign(key, trailer_message(trailer))
    return [*lines[:-1], (json.dumps({"trailer": trailer}) + "\n").encode()]


def _rewritten(lines: Lines, checkpoints: dict[str, Any], key: Ed25519PrivateKey) -> Any:
    """The whole history rewritten from its second event on, every hash recomputed, every
    checkpoint and the trailer signed again by `key`."""
    records = [json.loads(line) for line in lines[:-1]]
    records[1]["at"] = "2020-01-01T00:00:00+00:00"
    prev = records[0]["hash"]
    for record in records[1:]:
        record["prev_hash"] = prev
        record["hash"] = prev = record_hash(prev, record)
    body = [(json.dumps(r, ensure_ascii=False) + "\n").encode() for r in records]
    by_position = {r["position"]: r["hash"] for r in records}
    forged = []
    for checkpoint in checkpoints["checkpoints"]:
        position, signed_at = checkpoint["position"], checkpoint["signed_at"]
        chain_hash = by_position[position]
        message = checkpoint_message(position, chain_hash, signed_at)
        forged.append(
            {
                "position": position,
                "hash": chain_hash,
                "signed_at": signed_at,
                "signature": _sign(key, message),
            }
        )
    forged_checkpoints = {**checkpoints, "public_key": public_pem(key), "checkpoints": forged}
    return _resigned_trailer([*body, lines[-1]], key), forged_checkpoints


def _real_key() -> Ed25519PrivateKey:
    return load_key(AUDIT_KEY, create=False)


async def test_the_public_key_is_the_one_that_signs(api: Api, clock: FixedClock) -> None:
    lines, checkpoints = await _recorded(api, clock)
    answer = await api.get("/audit/public-key", role="regulator")
    assert answer.status_code == 200
    published = answer.json()
    assert published["algorithm"] == "Ed25519"
    assert published["public_key"] == pinned_key()
    # The fingerprint: SHA-256 over the DER SubjectPublicKeyInfo, hex (`openssl pkey -pubin
    # -outform DER | sha256sum`).
    der = serialization.load_pem_public_key(published["public_key"].encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert published["fingerprint"] == hashlib.sha256(der).hexdigest()
    assert checkpoints["fingerprint"] == published["fingerprint"]
    assert verify(lines, checkpoints, key=published["public_key"]).valid
    for role in ("agent", "investigator", "callback", "supervisor"):
        assert (await api.get("/audit/public-key", role=role)).status_code == 403


async def test_a_history_re_signed_with_a_fresh_key_fails_the_pinned_key(
    api: Api, clock: FixedClock
) -> None:
    lines, checkpoints = await _recorded(api, clock)
    fresh = Ed25519PrivateKey.generate()
    forged_lines, forged_checkpoints = _rewritten(lines, checkpoints, fresh)
    # Under the key the forged files name, everything adds up: that is why a key is pinned.
    assert verify(forged_lines, forged_checkpoints, key=public_pem(fresh)).valid
    verdict = verify(forged_lines, forged_checkpoints, key=pinned_key())
    assert not verdict.valid
    assert "not signed by the pinned key" in verdict.message
    unpinned = verify(forged_lines, forged_checkpoints, key=None)
    assert not unpinned.valid and not unpinned.pinned
    assert fingerprint(fresh.public_key()) in unpinned.message
    assert "--key" in unpinned.message


async def test_a_history_re_signed_with_the_real_key_fails_known_checkpoints(
    api: Api, clock: FixedClock
) -> None:
    """The operator holds the key, so only what the regulator kept can catch them."""
    lines, checkpoints = await _recorded(api, clock)
    known = await _checkpoints(api)  # the witness keeps what it was given
    forged_lines, forged_checkpoints = _rewritten(lines, checkpoints, _real_key())
    assert verify(forged_lines, forged_checkpoints, key=pinned_key()).valid
    verdict = verify(forged_lines, forged_checkpoints, key=pinned_key(), known=known)
    assert not verdict.valid
    assert "known" in verdict.message
    # Even with checkpoints that leave the rewritten part out, the lines contradict them.
    just_lines = verify(
        forged_lines, {**forged_checkpoints, "checkpoints": []}, key=pinned_key(), known=known
    )
    assert not just_lines.valid
    assert "known from" in just_lines.message
    # The untouched export agrees with what was kept.
    assert verify(lines, checkpoints, key=pinned_key(), known=known).valid


async def test_known_checkpoints_across_exports(api: Api, clock: FixedClock) -> None:
    lines, _ = await _recorded(api, clock)
    known = await _checkpoints(api)
    clock.advance(timedelta(hours=1))
    await _record_some(api, clock)
    await _signed_head(api)
    later = await _checkpoints(api)
    everything = await _export(api)
    verdict = verify(everything, later, key=pinned_key(), known=known)
    assert verdict.valid, verdict.message
    assert "known checkpoint(s) matched" in verdict.message
    assert ", 0 known" not in verdict.message
    # An export of the later period alone cannot check the earlier checkpoint: it says so.
    since = json.loads(everything[len(lines) - 1])["at"]
    part = await _export(api, **{"from": since})
    verdict = verify(part, later, key=pinned_key(), known=known)
    assert verdict.valid, verdict.message
    assert any("outside this export, not checked" in note for note in verdict.notes)
    # A history cut short before a checkpoint the regulator holds, its period reaching past
    # the time that checkpoint was given out, is caught.
    cut = _resigned_trailer([*lines[:-3], lines[-1]], _real_key(), to=since)
    short = verify(cut, {**later, "checkpoints": []}, key=pinned_key(), known=known)
    assert not short.valid
    assert "not on its chain" in short.message


async def test_a_rotation_announced_by_the_pinned_key_passes(
    settings: Settings, clock: FixedClock, token: TokenFactory, tmp_path: Path
) -> None:
    key_path = tmp_path / "audit.pem"
    shutil.copy(AUDIT_KEY, key_path)
    own = settings.model_copy(update={"audit_key_path": key_path})
    async with serving(create_app(own, clock=clock), token) as api:
        before, _ = await _recorded(api, clock)
        old = pinned_key()
        clock.advance(timedelta(minutes=1))
        retired, in_force = await rotate(own, clock=clock)
        assert retired == fingerprint(_real_key().public_key())
        assert key_path.read_bytes() != AUDIT_KEY.read_bytes()
        assert not (tmp_path / "audit.pem.successor").exists()
        await _record_some(api, clock)
        await _signed_head(api)
        published = (await api.get("/audit/public-key", role="regulator")).json()
        assert published["fingerprint"] == in_force
        after, checkpoints = await _export(api), await _checkpoints(api)
    announcing = [c for c in checkpoints["checkpoints"] if "successor" in c]
    assert [c["successor"]["fingerprint"] for c in announcing] == [in_force]
    verdict = verify(after, checkpoints, key=old)
    assert verdict.valid, verdict.message
    assert in_force[:16] in verdict.notes[0]
    # An export made before the rotation still verifies with the later checkpoints.
    assert verify(before, checkpoints, key=old).valid
    # A regulator who pins the new key checks what it signed (earlier checkpoints: not).
    pinned_new = verify(after, checkpoints, key=published["public_key"])
    assert pinned_new.valid, pinned_new.message
    assert any("before the pinned key took over" in note for note in pinned_new.notes)


async def test_a_chain_of_successors_each_announced_by_its_predecessor_passes(
    api: Api, clock: FixedClock
) -> None:
    lines, _ = await _recorded(api, clock)
    body = lines[:-1]
    real, second, third = _real_key(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    checkpoints = {
        "checkpoints": [
            _checkpoint(real, body[0]),
            _checkpoint(real, body[2], successor=second),
            _checkpoint(second, body[4]),
            _checkpoint(second, body[5], successor=third),
            _checkpoint(third, body[-1]),
        ]
    }
    verdict = verify(_resigned_trailer(lines, third), checkpoints, key=pinned_key())
    assert verdict.valid, verdict.message
    assert "5 checkpoint(s) matched" in verdict.message


async def test_a_rotation_announced_improperly_fails(api: Api, clock: FixedClock) -> None:
    lines, _ = await _recorded(api, clock)
    body = lines[:-1]
    real, successor, stranger = (
        _real_key(),
        Ed25519PrivateKey.generate(),
        Ed25519PrivateKey.generate(),
    )
    signed_by_successor = _resigned_trailer(lines, successor)
    cases = {
        "announced by a key nobody pinned": [
            _checkpoint(real, body[0]),
            _checkpoint(stranger, body[2], successor=successor),
            _checkpoint(successor, body[-1]),
        ],
        "never announced": [_checkpoint(real, body[0]), _checkpoint(successor, body[-1])],
        "the retired key signs on": [
            _checkpoint(real, body[0]),
            _checkpoint(real, body[2], successor=successor),
            _checkpoint(real, body[-1]),
        ],
    }
    for case, checkpoints in cases.items():
        verdict = verify(signed_by_successor, {"checkpoints": checkpoints}, key=pinned_key())
        assert not verdict.valid, case
        assert "not signed by" in verdict.message, (case, verdict.message)
    # No checkpoint at all: the trailer alone must be by the pinned key.
    verdict = verify(signed_by_successor, {"checkpoints": []}, key=pinned_key())
    assert not verdict.valid and "trailer" in verdict.message
    # A retired key may not sign an export that runs past its retirement.
    retired = [_checkpoint(real, body[0]), _checkpoint(real, body[2], successor=successor)]
    verdict = verify(_resigned_trailer(lines, real), {"checkpoints": retired}, key=pinned_key())
    assert not verdict.valid and "retired" in verdict.message


def _run_verifier(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "verify.py", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


async def test_the_standalone_verifier_pins_and_explains(
    api: Api, clock: FixedClock, tmp_path: Path
) -> None:
    """verify.py copied out on its own, as a regulator runs it."""
    lines, checkpoints = await _recorded(api, clock)
    shutil.copy(VERIFY, tmp_path / "verify.py")
    (tmp_path / "export.ndjson").write_bytes(b"".join(lines))
    (tmp_path / "checkpoints.json").write_text(json.dumps(checkpoints))
    (tmp_path / "operator.pem").write_text(pinned_key())
    (tmp_path / "known.json").write_text(json.dumps(checkpoints))
    files = ("export.ndjson", "checkpoints.json")

    ok = _run_verifier(tmp_path, *files, "--key", "operator.pem", "--known", "known.json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("valid: ")

    unpinned = _run_verifier(tmp_path, *files)
    assert unpinned.returncode == 3
    assert "valid:" not in unpinned.stdout
    assert checkpoints["fingerprint"] in unpinned.stdout and "--key" in unpinned.stdout

    other = Ed25519PrivateKey.generate()
    (tmp_path / "other.pem").write_text(public_pem(other))
    wrong = _run_verifier(tmp_path, *files, "--key", "other.pem")
    assert wrong.returncode == 1 and wrong.stdout.startswith("invalid: ")

    (tmp_path / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n")
    (tmp_path / "private.pem").write_bytes(AUDIT_KEY.read_bytes())
    (tmp_path / "broken.json").write_text("{")
    for args, says in [
        (("--key", "garbage.pem"), "is not a PEM public key"),
        (("--key", "private.pem"), "is a private key"),
        (("--key", "missing.pem"), "cannot read --key"),
        (("--key", "operator.pem", "--known", "broken.json"), "is not JSON"),
    ]:
        bad = _run_verifier(tmp_path, *files, *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert says in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr)


async def test_a_service_left_with_the_retired_key_signs_nothing(
    settings: Settings, clock: FixedClock, token: TokenFactory, tmp_path: Path
) -> None:
    """A rotation made elsewhere (another host's key file): this service's key is retired,
    so it answers 503 rather than sign with it, until the successor is installed."""
    here, elsewhere = tmp_path / "here.pem", tmp_path / "elsewhere.pem"
    shutil.copy(AUDIT_KEY, here)
    shutil.copy(AUDIT_KEY, elsewhere)
    own = settings.model_copy(update={"audit_key_path": here})
    async with serving(create_app(own, clock=clock), token) as api:
        await _recorded(api, clock)
        _, in_force = await rotate(
            settings.model_copy(update={"audit_key_path": elsewhere}), clock=clock
        )
        for answer in (
            await api.get("/audit/public-key", role="regulator"),
            await api.get("/audit/export", role="regulator"),
            await api.client.post("/audit/checkpoints", headers=api.headers("analyst")),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert "Retry-After" in answer.headers
        shutil.copy(elsewhere, here)
        published = (await api.get("/audit/public-key", role="regulator")).json()
        assert published["fingerprint"] == in_force


async def test_an_interrupted_rotation_is_finished_by_running_it_again(
    settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key_path = tmp_path / "audit.pem"
    shutil.copy(AUDIT_KEY, key_path)
    own = settings.model_copy(update={"audit_key_path": key_path})
    async with serving(create_app(own, clock=clock), token) as api:
        await _recorded(api, clock)

        def crash(*_: object) -> None:
            raise OSError("killed before the key file was replaced")

        with monkeypatch.context() as patched:
            patched.setattr("shared.cli.rotate_audit_key.os.replace", crash)
            with pytest.raises(OSError):
                await rotate(own, clock=clock)
        assert key_path.read_bytes() == AUDIT_KEY.read_bytes()  # announced, not installed
        retired, in_force = await rotate(own, clock=clock)
        assert (
            in_force == (await api.get("/audit/public-key", role="regulator")).json()["fingerprint"]
        )
        announcing = [c for c in (await _checkpoints(api))["checkpoints"] if "successor" in c]
        assert [c["successor"]["fingerprint"] for c in announcing] == [in_force]
        assert retired == fingerprint(_real_key().public_key())


async def test_an_export_to_a_future_date_agrees_with_checkpoints_signed_after_it(
    api: Api, clock: FixedClock
) -> None:
    """A regulator asks for the period up to next week; a week later their witness copy holds
    checkpoints of events recorded after the export. Those are outside it, not "missing"."""
    await _record_some(api, clock)
    await _signed_head(api)
    to = (clock() + timedelta(days=7)).isoformat()
    lines = await _export(api, to=to)
    assert json.loads(lines[-1])["trailer"]["to"] == clock().isoformat()  # ends now
    checkpoints = await _checkpoints(api)
    clock.advance(timedelta(days=1))
    await _record_some(api, clock)
    await _signed_head(api)
    witness = await _checkpoints(api)
    verdict = verify(lines, checkpoints, key=pinned_key(), known=witness)
    assert verdict.valid, verdict.message
    assert any("outside this export, not checked" in note for note in verdict.notes)


async def test_a_signer_that_chose_its_key_before_a_rotation_signs_nothing_past_it(
    settings: Settings,
    clock: FixedClock,
    token: TokenFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race: a service reads which key is in force, a rotation announces a successor and
    the chain moves on, then the service signs the head. The retired key must not sign past
    its announcement: every checkpoints file would fail from then on."""
    key_path = tmp_path / "audit.pem"
    shutil.copy(AUDIT_KEY, key_path)
    # No projector: the test moves the chain, and nothing signs but what the test calls.
    own = settings.model_copy(update={"audit_key_path": key_path, "projector_enabled": False})
    app = create_app(own, clock=clock)
    async with serving(app, token) as api:
        store, service = app.state.store, app.state.checkpoints
        assert isinstance(service, Checkpoints)
        await _record_some(api, clock)
        await catch_up(store, ChainProjection())
        old = await service.signing_key()  # chosen before the rotation
        assert fingerprint(old.public_key()) == fingerprint(_real_key().public_key())
        clock.advance(timedelta(minutes=1))
        _, in_force = await rotate(own, clock=clock)
        (announcing,) = (await _checkpoints(api))["checkpoints"]
        await _record_some(api, clock)
        await catch_up(store, ChainProjection())
        head = await store.ping()
        assert head > announcing["position"]

        with pytest.raises(KeyRetired):
            await service._sign_head_with(old, clock())
        assert [c["position"] for c in (await _checkpoints(api))["checkpoints"]] == [
            announcing["position"]
        ]

        # sign_head whose first look at the key predates the rotation takes the successor.
        looks = iter([old])
        real_look = service.signing_key

        async def stale_then_real() -> Ed25519PrivateKey:
            return next(looks, None) or await real_look()

        monkeypatch.setattr(service, "signing_key", stale_then_real)
        signed = await service.sign_head(clock())
        monkeypatch.undo()
        assert signed is not None and signed["position"] == head
        lines, checkpoints = await _export(api), await _checkpoints(api)
    assert [c["position"] for c in checkpoints["checkpoints"]] == [announcing["position"], head]
    verdict = verify(lines, checkpoints, key=pinned_key())  # --key pinned to the retired key
    assert verdict.valid, verdict.message
    assert in_force[:16] in verdict.notes[0]
