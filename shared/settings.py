"""All configuration in one object, read from COMPLAINTS_* environment variables (or a .env).

Create it once at start-up and pass it in; nothing deeper reads os.environ.
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import URL, make_url

from shared.domain.codes import Service
from shared.domain.policy import DEFAULT_POLICY_PATH

DEV_SECRET = "dev-only-insecure-secret-change-me-0123456789"
DEV_INDEX_KEY = "dev-only-index-key-change-me-0123456789"
#: Settings may also be files here, one per setting, named as its environment variable
#: (`COMPLAINTS_JWT_SECRET`, any case) and holding its value: secrets mounted as files (a
#: Kubernetes Secret volume, Docker secrets). An environment variable wins over a file.
SECRETS_DIR = Path("/run/secrets/complaints")
#: An origin as a browser sends it: scheme, lower-case host, a port only if not the default.
_ORIGIN = re.compile(r"^(https?)://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?$")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: Shortest JWT secret production accepts: HS256 wants a key as long as its hash (RFC 7518).
MIN_SECRET_BYTES = 32
#: A service's base URL, as the console calls it; by default where `make run` serves each.
ServiceUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+\S*$")]
MAKE_RUN_URLS: dict[Service, str] = {
    Service.INTAKE: "http://127.0.0.1:8001",
    Service.INVESTIGATION: "http://127.0.0.1:8002",
    Service.ESCALATION: "http://127.0.0.1:8003",
    Service.CALLBACK: "http://127.0.0.1:8004",
}


def _safe_keys_url(url: str | None) -> bool:
    """Https, or http to this machine (nothing on a network path to swap the keys)."""
    if url is None or url.startswith("https://"):
        return True
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="COMPLAINTS_", env_file=".env", extra="ignore", secrets_dir=SECRETS_DIR
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The secrets directory only where it exists (pydantic-settings warns otherwise, on
        every machine that has none)."""
        sources = (init_settings, env_settings, dotenv_settings)
        if isinstance(file_secret_settings, SecretsSettingsSource):
            where = file_secret_settings.secrets_dir
            if where is not None and Path(str(where)).is_dir():
                return (*sources, file_secret_settings)
        return sources

    #: `make run` sets development; anything else must bring its own COMPLAINTS_JWT_SECRET.
    environment: Literal["development", "production"] = "production"
    #: sqlite:///path/to/file.sqlite3 (default) or postgresql://user:pass@host:5432/dbname
    database_url: str = "sqlite:///./var/complaints.sqlite3"
    #: Signs and verifies the service's own HS256 tokens (`make token`). In production, left
    #: unset (the published development value) turns HS256 tokens off: only the identity
    #: provider's tokens (`jwks_url`) are accepted then.
    jwt_secret: SecretStr = SecretStr(DEV_SECRET)
    jwt_algorithm: Literal["HS256"] = "HS256"
    #: The operator's identity provider (OIDC): where its signing keys are published (JWKS,
    #: http or https). A token whose header names a `kid` is verified against these keys only.
    jwks_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    #: The asymmetric algorithms the identity provider's tokens may use (JSON list in the env).
    jwks_algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]] = Field(
        default=["RS256", "ES256"], min_length=1
    )
    #: How long the fetched keys are trusted before they are fetched again: a key the provider
    #: has withdrawn stops verifying tokens within this time.
    jwks_cache_seconds: float = Field(default=300.0, ge=1, le=86_400)
    #: A token naming a `kid` the cached keys lack fetches them again at most this often.
    jwks_refetch_seconds: float = Field(default=30.0, ge=0, le=3_600)
    #: Longest wait for the keys (503 with Retry-After beyond, or when they cannot be had).
    jwks_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: When set, every token (HS256 or not) must carry this `iss` / have this in its `aud`.
    jwt_issuer: str | None = Field(default=None, min_length=1)
    jwt_audience: str | None = Field(default=None, min_length=1)
    #: The claim holding the token's roles: a name, or a dotted path into nested objects
    #: (`realm_access.roles` in Keycloak's tokens).
    jwt_roles_claim: str = Field(default="roles", pattern=r"^[^.\s]+(\.[^.\s]+)*$")
    #: The claim holding the staff member's department (optional in a token; the console's
    #: "my department" queue): a name or a dotted path, as the roles'.
    jwt_department_claim: str = Field(default="department", pattern=r"^[^.\s]+(\.[^.\s]+)*$")
    #: Keys the ids that link a customer's repeat complaints (HMAC); keep it stable and secret.
    index_key: SecretStr = SecretStr(DEV_INDEX_KEY)
    policy_path: Path = DEFAULT_POLICY_PATH
    #: Policy versions an improvement report may re-analyse under (`?policy=<version>`): every
    #: `*.toml` in this directory, besides the one in force.
    policy_dir: Path = DEFAULT_POLICY_PATH.parent
    #: Longest period one improvement report may cover (422 beyond).
    report_max_days: int = Field(default=400, ge=1, le=3660)

    #: Take a snapshot every N events of a complaint, so reads stay fast on long histories.
    snapshot_interval: int = Field(default=50, ge=2)
    #: Threads that may run event-store calls at once; the PostgreSQL pool is sized to match.
    store_threads: int = Field(default=16, ge=1, le=64)
    #: Attempts of a command that keeps losing the optimistic-concurrency race before 409.
    write_attempts: int = Field(default=12, ge=1, le=100)
    #: A claimed Idempotency-Key whose request died is taken over after this many seconds.
    idempotency_lease_seconds: float = Field(default=30.0, gt=0)
    #: How long the answer to an Idempotency-Key is kept (a retry after that finds what its
    #: request wrote; the answer holds no personal data).
    idempotency_retention_hours: float = Field(default=24.0, ge=1, le=24 * 90)
    #: Days an archived complaint keeps its customer's personal data: once every complaint of a
    #: customer has been archived this long, their data is erased by itself (as by
    #: `POST /customers/{id}/erasure`). 0 turns it off.
    personal_data_retention_days: int = Field(default=730, ge=0, le=36500)
    #: Longest period one audit export may cover (422 beyond); a longer one is exported period
    #: by period, each export's first `prev_hash` being the last `hash` of the one before.
    audit_export_max_days: int = Field(default=366, ge=1, le=36500)
    #: How long an audit export waits for the chain (built asynchronously) to reach every event
    #: committed before the request; 503 with Retry-After if it does not get there in time.
    audit_export_wait_seconds: float = Field(default=2.0, ge=0, le=30)
    #: Largest request body accepted (413 beyond).
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Largest request head accepted, request line and headers together, and most header
    #: fields; beyond either the server answers 431 and closes the connection, having read
    #: little more than this.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_header_count: int = Field(default=100, ge=10, le=1000)
    #: A client has this long to send a request's whole head (from connecting, or from the
    #: head's first byte on a kept-alive connection), and then this long to send its whole
    #: body; a client too slow for either is disconnected, so a trickle holds no connection.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    #: An idle kept-alive connection is closed after this many seconds.
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    #: Serve `/metrics` on this port of its own (`shared.cli.serve` listens on it beside the
    #: API's, on the same host, in the same process), and only there: the API's port answers
    #: it 404, and this port answers nothing else. A firewall or NetworkPolicy, which admits
    #: by port and not by path, can then let the monitoring system reach the metrics alone.
    #: Unset: `/metrics` is served on the API's port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    #: The load balancers or reverse proxies in front of the services, as addresses or networks
    #: separated by commas (`10.0.0.0/8,192.168.1.5`). Only a request from one of them has its
    #: `X-Forwarded-For` (and `X-Forwarded-Proto`) believed, and so its client's address used for
    #: rate limits; by default no peer is trusted, and each request's address is its peer's.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = []
    #: Requests per second each client (token `sub`, else address) may make on average, and
    #: the burst it may send at once; beyond that 429 with Retry-After. 0 turns limits off.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    #: Where the rate limits are counted: a Redis all replicas share (`redis://host:6379/0`,
    #: `rediss://...` for TLS, `redis+unix:///path/to/socket`), so N replicas together allow a
    #: client the rate once; unset, each process counts on its own (N replicas allow N times
    #: it). Redis unreachable: requests pass unlimited (logged, and counted in
    #: `complaints_rate_limit_storage_errors_total`) rather than all being refused.
    rate_limit_storage_url: str | None = None
    #: Prefixes every key the limits put in that Redis (several deployments may share one).
    rate_limit_key_prefix: str = Field(default="complaints", min_length=1)
    #: The origins whose browser pages may call the API (CORS), e.g.
    #: `https://complaints.example.com,http://localhost:5173`, or `*` for any; empty: CORS off.
    cors_origins: Annotated[list[str], NoDecode] = []
    log_level: str = "info"

    #: Ed25519 private key (PEM) that signs audit checkpoints; created by setup in development.
    audit_key_path: Path = Path("./var/audit-signing-key.pem")
    #: The key-encryption keys (KEKs) that wrap the customers' keys: a file, mode 600, kept
    #: apart from the database and its backups; created by setup in development.
    kek_path: Path = Path("./var/key-encryption-keys")
    #: Days a KEK is kept after a rotation superseded it; `python -m shared.cli.kek purge`
    #: destroys it then, and no copy of a key it wrapped (a backup, a WAL segment) opens again.
    kek_retention_days: int = Field(default=30, ge=0, le=3650)
    #: Days a KEK stays in force: `python -m shared.cli.kek maintain` (run daily) then stages
    #: a new one, and puts it in force on a later run, once every running process holds it.
    kek_rotation_days: int = Field(default=90, ge=1, le=3650)
    #: Sign the audit chain head this often (seconds), when it has moved.
    checkpoint_seconds: float = Field(default=60.0, gt=0)
    #: Run the projections in this process (one process at a time holds the lease).
    projector_enabled: bool = True
    projector_lease_seconds: float = Field(default=10.0, gt=0)
    #: How often a projector polls when no NOTIFY wakes it (SQLite always polls).
    projector_poll_seconds: float = Field(default=0.25, gt=0)
    #: How many complaints the projector keeps in memory (least recently touched dropped
    #: first), so a batch folds its events onto them instead of loading each from the
    #: store; about 22 KB each for a complaint of four events (45 MB at 2,000), more for
    #: longer ones. 0 loads every complaint a batch touches.
    projection_cache_size: int = Field(default=2_000, ge=0)
    #: /ready answers 503 while a projection this process runs (it holds the projector lease)
    #: is more than this many events behind the store, or its oldest event not yet applied is
    #: older than this many seconds; 0 turns either check off.
    ready_max_lag_events: int = Field(default=10_000, ge=0)
    ready_max_lag_seconds: float = Field(default=300.0, ge=0)
    #: Send traces (OpenTelemetry, OTLP over HTTP) to this collector, e.g.
    #: `http://otel-collector:4318`; also read from the standard OTEL_EXPORTER_OTLP_ENDPOINT.
    #: Unset: nothing is traced (no instrumentation at all).
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        validation_alias=AliasChoices(
            "otlp_endpoint", "COMPLAINTS_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
    )
    #: Run the deadline watch, the incident watch and the recalculation in escalation
    #: processes (each one process at a time, by its lease; the others stand by).
    deadline_watch_enabled: bool = True
    #: How often the deadline watch looks for limits that have passed.
    deadline_watch_seconds: float = Field(default=1.0, gt=0)
    #: The leases of the deadline watch, the incident watch and the recalculation: a standby
    #: takes a job over within this many seconds of its holder dying (at once when the holder
    #: stops cleanly: it releases them).
    watch_lease_seconds: float = Field(default=10.0, gt=0)
    #: How often escalation processes look for limits counted on an estimated holiday schedule
    #: that the policy in force now knows officially (and at start).
    recalculation_seconds: float = Field(default=600.0, gt=0)
    #: Run the notification dispatcher in investigation processes (one at a time, by lease).
    dispatcher_enabled: bool = True
    #: Where the SMS/e-mail gateway takes messages (POST, JSON, Idempotency-Key honoured).
    notification_gateway_url: str = "http://127.0.0.1:8025/messages"
    #: Timeout of one call to the gateway, in seconds.
    notification_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    #: First retry after this many seconds, doubling up to `notification_backoff_max_seconds`.
    notification_backoff_seconds: float = Field(default=2.0, gt=0)
    notification_backoff_max_seconds: float = Field(default=300.0, gt=0)
    #: Run the webhook sender in intake processes (one at a time, by lease).
    webhooks_enabled: bool = True
    #: Timeout of one webhook delivery attempt, in seconds.
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: A failed delivery is tried again after this many seconds, doubling up to the maximum,
    #: and given up (`failed`) after `webhook_max_attempts` attempts.
    webhook_backoff_seconds: float = Field(default=5.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_max_attempts: int = Field(default=15, ge=1, le=100)
    #: Accept receivers on this machine or a private network, and plain http (a local
    #: receiver). Off, only https to public addresses (no SSRF into the operator's network);
    #: development always allows them.
    webhook_local_urls: bool = False
    #: How long a list with `min_position` waits for the projection to get there.
    read_your_writes_seconds: float = Field(default=5.0, ge=0, le=30)
    #: Where the console (`/console/`) sends a command that another service serves: each
    #: service's base URL (JSON object in the env). Reads go to the console's own process.
    #: The default is `make run`'s ports.
    console_service_urls: dict[Service, ServiceUrl] = dict(MAKE_RUN_URLS)

    @field_validator("console_service_urls")
    @classmethod
    def _every_service(cls, urls: dict[Service, str]) -> dict[Service, str]:
        """A service left out keeps its `make run` address: the console knows where each is."""
        return {**MAKE_RUN_URLS, **urls}

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        """Addresses and networks separated by commas (a host is a network of one); anything
        else is refused at start, never silently trusted or ignored."""
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            try:
                return [ip_network(item, strict=False) for item in value]
            except ValueError as exc:
                raise ValueError(
                    "COMPLAINTS_TRUSTED_PROXIES takes IP addresses or networks separated by "
                    f"commas (e.g. 10.0.0.0/8,192.168.1.5): {exc}"
                ) from None
        return value

    @property
    def rate_limit_window_seconds(self) -> float:
        """The limiter allows `burst` requests per this many seconds."""
        return self.rate_limit_burst / self.rate_limit_per_second

    @model_validator(mode="after")
    def _whole_rate_window(self) -> Settings:
        """The window must be a whole number of seconds, or the limiter would not keep it."""
        if self.rate_limit_per_second > 0:
            window = self.rate_limit_window_seconds
            if window < 1 or window != int(window):
                raise ValueError(
                    "COMPLAINTS_RATE_LIMIT_BURST divided by COMPLAINTS_RATE_LIMIT_PER_SECOND "
                    "must be a whole number of seconds, at least 1 (e.g. 200 and 100)"
                )
        return self

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        """A Redis URL or nothing (empty is nothing), refused at start if anything else."""
        if not url or not url.strip():
            return None
        url = url.strip()
        if url.split("://", 1)[0] not in ("redis", "rediss", "redis+unix"):
            raise ValueError(
                "COMPLAINTS_RATE_LIMIT_STORAGE_URL takes a Redis URL (redis://host:6379/0, "
                "rediss://... or redis+unix:///path), or is left unset for per-process limits"
            )
        return url

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        """Origins from the environment: comma-separated, or a JSON array."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        """Each origin exactly as browsers send it, or it would never match: no path or
        trailing slash, a lower-case host, no default port; `*` only alone."""
        if "*" in origins and len(origins) > 1:
            raise ValueError("COMPLAINTS_CORS_ORIGINS: `*` allows every origin; list no others")
        for origin in origins:
            found = _ORIGIN.match(origin)
            if origin != "*" and (found is None or _DEFAULT_PORTS[found[1]] == found[3]):
                raise ValueError(
                    f"COMPLAINTS_CORS_ORIGINS: {origin!r} is not an origin as a browser sends "
                    "it: write scheme://host[:port], lower case, no path or trailing slash, "
                    "no default port (e.g. https://complaints.example.com)"
                )
        return origins

    @property
    def webhook_local_urls_allowed(self) -> bool:
        return self.webhook_local_urls or self.environment == "development"

    @property
    def url(self) -> URL:
        return make_url(self.database_url)

    @property
    def is_postgres(self) -> bool:
        return self.url.get_backend_name() in {"postgresql", "postgres"}

    def uses_dev_secret(self) -> bool:
        return self.jwt_secret.get_secret_value() == DEV_SECRET

    def hs256_secret(self) -> str | None:
        """The secret of the service's own HS256 tokens, or None where they are off: in
        production with no secret of its own (only the identity provider's tokens count)."""
        if self.environment == "production" and self.uses_dev_secret():
            return None
        return self.jwt_secret.get_secret_value()

    def check(self) -> None:
        """Refuse settings that are unsafe in production."""
        if self.environment == "production" and not _safe_keys_url(self.jwks_url):
            raise ValueError(
                "COMPLAINTS_JWKS_URL must be https in production (http only to this machine, "
                "e.g. a sidecar): keys fetched over a network in plain http could be swapped "
                "on the way, and tokens with any role signed with them."
            )
        if self.environment == "production" and (
            (self.uses_dev_secret() and self.jwks_url is None)
            or self.index_key.get_secret_value() == DEV_INDEX_KEY
        ):
            raise ValueError(
                "Set COMPLAINTS_INDEX_KEY, and COMPLAINTS_JWT_SECRET or COMPLAINTS_JWKS_URL "
                "(or both) (or COMPLAINTS_ENVIRONMENT=development to use the published "
                "development secrets on your own machine)."
            )
        secret_bytes = len(self.jwt_secret.get_secret_value().encode())
        own_secret = not self.uses_dev_secret()  # (the published one is unused with JWKS)
        if self.environment == "production" and own_secret and secret_bytes < MIN_SECRET_BYTES:
            raise ValueError(
                f"COMPLAINTS_JWT_SECRET is {secret_bytes} bytes long; production needs at least "
                f"{MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)."
            )
        backend = self.url.get_backend_name()
        if backend not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(f"unsupported database {backend!r}: use sqlite:// or postgresql://")
