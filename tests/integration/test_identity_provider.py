"""Tokens from the operator's identity provider (OIDC: Keycloak, Authing, …): RS256 and ES256
tokens verified against its JWKS, served here by a small HTTP server of the test's own, beside
the service's own HS256 tokens."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from services.intake.main import create_app
from shared.domain.clock import FixedClock
from shared.http.auth import mint_token
from shared.settings import DEV_SECRET, Settings
from tests.conftest import TEST_SECRET, TokenFactory, intake_body, make_settings
from tests.integration.conftest import Api, serving

# The provider's tokens do not touch the store: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

ISSUER = "https://sso.operator.example/realms/complaints"
AUDIENCE = "complaints-api"


@dataclass(frozen=True)
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    stranger: rsa.RSAPrivateKey  # a key the provider never published

    def jwks(self) -> list[dict[str, Any]]:
        return [
            jwk(RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "rsa-1", "RS256"),
            jwk(ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "ec-1", "ES256"),
        ]

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def jwk(key: dict[str, Any], kid: str, alg: str) -> dict[str, Any]:
    return {**key, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        stranger=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


class KeyServer:
    """The provider's JWKS endpoint: counts its fetches; `gate`, when set, holds each answer
    until the test opens it."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.received = threading.Event()
        self.gate: threading.Event | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                owner.received.set()
                if owner.gate is not None:
                    owner.gate.wait(30)
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the service gave up waiting
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/realms/complaints/certs"

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(keys: Keys) -> Iterator[KeyServer]:
    server = KeyServer(keys.jwks())
    yield server
    server.close()


def provider_settings(database_url: str, jwks_url: str, **overrides: Any) -> Settings:
    """A Keycloak-like set-up: issuer and audience checked, roles in `realm_access.roles`."""
    values: dict[str, Any] = {
        "jwks_url": jwks_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_roles_claim": "realm_access.roles",
        **overrides,
    }
    return make_settings(database_url, **values)


@asynccontextmanager
async def app_on(settings: Settings, clock: FixedClock, token: TokenFactory) -> AsyncIterator[Api]:
    async with serving(create_app(settings, clock=clock), token) as api:
        yield api


def idp_token(key: Any, kid: str | None, alg: str, **claims: Any) -> str:
    """A token as the provider issues it; a claim given as None is left out."""
    now = datetime.now(UTC)
    payload = {
        "sub": "3f1e2d4c-kc-user",
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "realm_access": {"roles": ["agent", "offline_access", "uma_authorization"]},
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def hs256_signed_with(secret: bytes, kid: str | None) -> str:
    """An HS256 token whose HMAC key is `secret` (PyJWT refuses a PEM as an HMAC key, so by
    hand): the algorithm-confusion attack, with the provider's public key as the secret."""

    def b64(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
    exp = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    claims = {
        "sub": "mallory",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": exp,
        "realm_access": {"roles": ["admin"]},
    }
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_rs256_and_es256_tokens_act_with_the_roles_of_the_configured_claim(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys, provider: KeyServer
) -> None:
    settings = provider_settings(database_url, provider.url)
    async with app_on(settings, clock, token) as api:
        agent = idp_token(keys.rsa, "rsa-1", "RS256")
        created = await api.client.post("/complaints", json=intake_body(), headers=bearer(agent))
        assert created.status_code == 201, created.text
        history = await api.client.get(
            f"/complaints/{created.json()['id']}/history", headers=bearer(agent)
        )
        assert history.json()["events"][0]["actor"] == {"id": "3f1e2d4c-kc-user", "role": "agent"}

        analyst = idp_token(keys.ec, "ec-1", "ES256", realm_access={"roles": ["analyst"]})
        assert (await api.client.get("/complaints", headers=bearer(analyst))).status_code == 200
        # ES256 verified, and the role rules as ever: an analyst may not accept
        refused = await api.client.post("/complaints", json=intake_body(), headers=bearer(analyst))
        assert refused.status_code == 403

        # roles only where the configured claim is not: none
        elsewhere = idp_token(keys.rsa, "rsa-1", "RS256", realm_access=None, roles=["agent"])
        answer = await api.client.get("/complaints", headers=bearer(elsewhere))
        assert answer.status_code == 401
        assert "realm_access.roles" in answer.json()["detail"]
    assert provider.fetches == 1  # the keys were fetched once and kept


def _refused(keys: Keys) -> dict[str, str]:
    past = datetime.now(UTC) - timedelta(minutes=10)
    pem = keys.rsa_public_pem()
    return {
        "wrong issuer": idp_token(keys.rsa, "rsa-1", "RS256", iss="https://elsewhere.example"),
        "no issuer": idp_token(keys.rsa, "rsa-1", "RS256", iss=None),
        "wrong audience": idp_token(keys.rsa, "rsa-1", "RS256", aud="another-client"),
        "no audience": idp_token(keys.ec, "ec-1", "ES256", aud=None),
        "expired": idp_token(keys.ec, "ec-1", "ES256", exp=past, iat=past - timedelta(hours=1)),
        "no exp": idp_token(keys.rsa, "rsa-1", "RS256", exp=None),
        "unknown kid": idp_token(keys.stranger, "rsa-9", "RS256"),
        "forged with the kid of a published key": idp_token(keys.stranger, "rsa-1", "RS256"),
        "ES256 naming the RSA key": idp_token(keys.ec, "rsa-1", "ES256"),
        "alg none with a kid": idp_token(None, "rsa-1", "none"),
        "alg none without a kid": idp_token(None, None, "none"),
        "HS256 with the public key, with its kid": hs256_signed_with(pem, "rsa-1"),
        "HS256 with the public key, no kid": hs256_signed_with(pem, None),
        "provider's token without its kid": idp_token(keys.rsa, None, "RS256"),
        "no known role": idp_token(keys.rsa, "rsa-1", "RS256", realm_access={"roles": ["x"]}),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong issuer",
        "no issuer",
        "wrong audience",
        "no audience",
        "expired",
        "no exp",
        "unknown kid",
        "forged with the kid of a published key",
        "ES256 naming the RSA key",
        "alg none with a kid",
        "alg none without a kid",
        "HS256 with the public key, with its kid",
        "HS256 with the public key, no kid",
        "provider's token without its kid",
        "no known role",
    ],
)
async def test_tokens_the_provider_did_not_issue_for_us_are_401(
    database_url: str,
    clock: FixedClock,
    token: TokenFactory,
    keys: Keys,
    provider: KeyServer,
    case: str,
) -> None:
    settings = provider_settings(database_url, provider.url)
    async with app_on(settings, clock, token) as api:
        answer = await api.client.post(
            "/complaints", json=intake_body(), headers=bearer(_refused(keys)[case])
        )
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert provider.fetches <= 1


async def test_unknown_kids_fetch_the_keys_again_at_most_once_per_refetch_period(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys, provider: KeyServer
) -> None:
    settings = provider_settings(database_url, provider.url)  # refetch at most every 30 s
    async with app_on(settings, clock, token) as api:
        valid = idp_token(keys.rsa, "rsa-1", "RS256")
        assert (await api.client.get("/complaints", headers=bearer(valid))).status_code == 200
        strangers = [idp_token(keys.stranger, f"rsa-{n}", "RS256") for n in range(2, 12)]
        answers = await asyncio.gather(
            *(api.client.get("/complaints", headers=bearer(t)) for t in strangers)
        )
        assert {a.status_code for a in answers} == {401}
    assert provider.fetches == 1


async def test_a_rotated_key_is_picked_up_by_one_refetch(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys, provider: KeyServer
) -> None:
    settings = provider_settings(database_url, provider.url, jwks_refetch_seconds=0)
    async with app_on(settings, clock, token) as api:
        old = idp_token(keys.rsa, "rsa-1", "RS256")
        assert (await api.client.get("/complaints", headers=bearer(old))).status_code == 200
        assert provider.fetches == 1
        provider.keys = [
            *provider.keys,
            jwk(RSAAlgorithm.to_jwk(keys.stranger.public_key(), as_dict=True), "rsa-2", "RS256"),
        ]
        new = idp_token(keys.stranger, "rsa-2", "RS256")
        assert (await api.client.get("/complaints", headers=bearer(new))).status_code == 200
        assert provider.fetches == 2
        assert (await api.client.get("/complaints", headers=bearer(new))).status_code == 200
        assert provider.fetches == 2  # kept
        unknown = idp_token(keys.stranger, "rsa-3", "RS256")
        assert (await api.client.get("/complaints", headers=bearer(unknown))).status_code == 401
        assert provider.fetches == 3  # one refetch for it, no more


async def test_the_services_own_hs256_tokens_still_work_beside_the_provider(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys, provider: KeyServer
) -> None:
    settings = provider_settings(database_url, provider.url)
    now = datetime.now(UTC)
    async with app_on(settings, clock, token) as api:
        own = mint_token(settings, "agent-7", ["agent"], timedelta(minutes=5), now)
        claims = jwt.decode(own, options={"verify_signature": False})
        assert claims["realm_access"] == {"roles": ["agent"]}  # where the provider has them
        assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
        answer = await api.client.post("/complaints", json=intake_body(), headers=bearer(own))
        assert answer.status_code == 201, answer.text
        # issuer and audience are checked on HS256 tokens too: one minted without them fails
        bare = token("agent")
        assert (await api.client.get("/complaints", headers=bearer(bare))).status_code == 401
        # an HS256 token naming a kid is taken for the provider's, and HS256 is not its
        with_kid = jwt.encode(claims, TEST_SECRET, "HS256", {"kid": "rsa-1"})
        assert (await api.client.get("/complaints", headers=bearer(with_kid))).status_code == 401
    assert provider.fetches == 0  # no HS256 token made the keys be fetched


async def test_in_production_without_a_secret_only_the_providers_tokens_count(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys, provider: KeyServer
) -> None:
    # (production stated: `make` exports COMPLAINTS_ENVIRONMENT=development)
    settings = provider_settings(
        database_url, provider.url, jwt_secret=DEV_SECRET, environment="production"
    )
    with pytest.raises(ValueError, match="HS256 tokens are off"):
        mint_token(settings, "agent-7", ["agent"], timedelta(minutes=5), datetime.now(UTC))
    dev = make_settings(database_url, jwt_secret=DEV_SECRET, environment="development")
    published = mint_token(dev, "agent-7", ["agent"], timedelta(minutes=5), datetime.now(UTC))
    async with app_on(settings, clock, token) as api:
        idp = idp_token(keys.rsa, "rsa-1", "RS256")
        assert (await api.client.get("/complaints", headers=bearer(idp))).status_code == 200
        refused = await api.client.get("/complaints", headers=bearer(published))
        assert refused.status_code == 401
    with pytest.raises(ValueError, match="COMPLAINTS_JWT_SECRET or COMPLAINTS_JWKS_URL"):
        make_settings(database_url, jwt_secret=DEV_SECRET, environment="production").check()


#: Settings the `token` fixture's HS256 tokens (`api.get`, `api.accept`) pass.
AS_THE_TEST_TOKENS: dict[str, Any] = {
    "jwt_issuer": None,
    "jwt_audience": None,
    "jwt_roles_claim": "roles",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_keys_that_cannot_be_fetched_answer_503_and_hs256_goes_on(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys
) -> None:
    """The token may be valid: 503 with Retry-After (retry later), not 401 (log in again)."""
    url = f"http://127.0.0.1:{_closed_port()}/certs"
    settings = provider_settings(database_url, url, **AS_THE_TEST_TOKENS)
    async with app_on(settings, clock, token) as api:
        idp = idp_token(keys.rsa, "rsa-1", "RS256", roles=["agent"])
        answer = await api.client.post(
            "/complaints", json=intake_body(), headers={**bearer(idp), "Idempotency-Key": "k-1"}
        )
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert int(answer.headers["Retry-After"]) > 0
        assert "identity provider" in answer.json()["detail"]
        own = await api.accept(intake_body())
        assert own.status_code == 201
        listed = await api.get("/complaints", min_position=own.headers["Event-Position"])
        assert [c["id"] for c in listed.json()["items"]] == [own.json()["id"]]


async def test_a_slow_key_fetch_holds_up_no_other_request_and_is_cut_short(
    database_url: str, clock: FixedClock, token: TokenFactory, keys: Keys, provider: KeyServer
) -> None:
    provider.gate = threading.Event()
    settings = provider_settings(
        database_url, provider.url, jwks_timeout_seconds=10, **AS_THE_TEST_TOKENS
    )
    async with app_on(settings, clock, token) as api:
        idp = idp_token(keys.rsa, "rsa-1", "RS256", roles=["agent"])
        waiting = asyncio.create_task(api.client.get("/complaints", headers=bearer(idp)))
        assert await asyncio.to_thread(provider.received.wait, 10)
        # the fetch is under way: the event loop still answers others
        assert (await api.get("/complaints")).status_code == 200
        assert not waiting.done()
        provider.gate.set()
        assert (await waiting).status_code == 200

    provider.gate = threading.Event()
    provider.received.clear()
    quick = settings.model_copy(update={"jwks_timeout_seconds": 0.3})
    async with app_on(quick, clock, token) as api:
        started = time.monotonic()
        answer = await api.client.get("/complaints", headers=bearer(idp))
        assert answer.status_code == 503
        assert "identity provider's keys" in answer.json()["detail"]
        assert time.monotonic() - started < 10  # the endpoint holds its answer 30 s
